"""A preset's tokenizer as a bare `tokenizers.Tokenizer`, plus the token-string rules.

The data stages use this module instead of transformers because importing transformers pulls in
torch when it is installed, and the data stages must run on a Mac without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers

from letterwise.presets import (
    GEMMA3_GGUF,
    QWEN3_TOKENIZER,
    SMOLLM2_GGUF,
    Preset,
    qwen3_tokenizer_dir,
    smollm2_gguf_path,
)

GGUF_CONTROL_TOKEN = 3  # llama.cpp token_type for control (special) tokens
GGUF_NORMAL_TOKEN, GGUF_USER_DEFINED_TOKEN = 1, 4  # user-defined: "\n\n", "[multimodal]", ...


def load_vocab_tokenizer(preset: Preset) -> Tokenizer:
    """The preset's tokenizer, offline, without transformers or torch."""
    if preset.tokenizer == QWEN3_TOKENIZER:
        return Tokenizer.from_file(str(qwen3_tokenizer_dir() / "tokenizer.json"))
    if preset.tokenizer == SMOLLM2_GGUF:
        return gguf_tokenizer(smollm2_gguf_path())
    if preset.tokenizer == GEMMA3_GGUF:
        from letterwise.gemma3_assets import gemma3_gguf_path

        return gguf_sentencepiece_tokenizer(gemma3_gguf_path())
    return _custom_tokenizer(preset.tokenizer)


def _custom_tokenizer(source: str) -> Tokenizer:
    local = Path(source)
    if local.is_dir():
        if not (local / "tokenizer.json").exists():
            raise FileNotFoundError(f"{local} has no tokenizer.json (a fast tokenizer is needed)")
        return Tokenizer.from_file(str(local / "tokenizer.json"))
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = hf_hub_download(source, "tokenizer.json", local_files_only=True)
    except LocalEntryNotFoundError:
        raise FileNotFoundError(
            f"the tokenizer of {source!r} is not in the local Hugging Face cache and this "
            f"pipeline never downloads at run time; run `python -m letterwise.models fetch "
            f"{source}` once, or set model to a local directory"
        ) from None
    return Tokenizer.from_file(path)


@lru_cache(maxsize=4)
def _gguf_fields(path: str) -> dict:
    import gguf

    reader = gguf.GGUFReader(path)
    wanted = (
        "tokenizer.ggml.model",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.token_type",
        "tokenizer.chat_template",
        "tokenizer.ggml.unknown_token_id",
    )
    return {key: reader.fields[key].contents() for key in wanted if key in reader.fields}


def gguf_tokenizer(path: Path) -> Tokenizer:
    """Rebuild the byte-level BPE tokenizer stored in a GGUF file's metadata."""
    fields = _gguf_fields(str(path))
    if fields.get("tokenizer.ggml.model") != "gpt2":
        raise ValueError(f"{path}: only byte-level BPE ('gpt2') GGUF tokenizers are supported")
    tokens: list[str] = fields["tokenizer.ggml.tokens"]
    merges = [tuple(m.split(" ", 1)) for m in fields["tokenizer.ggml.merges"]]
    tokenizer = Tokenizer(
        models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False)
    )
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    types = fields["tokenizer.ggml.token_type"]
    specials = [t for t, kind in zip(tokens, types, strict=True) if kind == GGUF_CONTROL_TOKEN]
    tokenizer.add_special_tokens(specials)
    return tokenizer


def gguf_sentencepiece_tokenizer(path: Path) -> Tokenizer:
    """Rebuild the SentencePiece-BPE tokenizer of a 'llama'-type GGUF that lists no merges
    (Gemma 3), torch-free.

    SentencePiece BPE merges the adjacent pair whose union comes first in the vocabulary, so a
    merge list ordered by the merged piece's position reproduces it in `tokenizers`' BPE (Gemma's
    stored scores do not follow that order; the file order does). Text is split on nothing: a
    space becomes "▁" and belongs to the piece after it; unknown characters fall back to bytes.
    """
    fields = _gguf_fields(str(path))
    if fields.get("tokenizer.ggml.model") != "llama" or "tokenizer.ggml.merges" in fields:
        raise ValueError(f"{path}: not a SentencePiece ('llama') GGUF tokenizer without merges")
    # Runs of spaces are stored as spaces; the normalizer turns every space into "▁".
    raw = fields["tokenizer.ggml.tokens"]
    tokens = ["▁" * len(t) if t and not t.strip(" ") else t for t in raw]
    types = fields["tokenizer.ggml.token_type"]
    vocab = {token: index for index, token in enumerate(tokens)}
    merges = []
    for index, (token, kind) in enumerate(zip(tokens, types, strict=True)):
        if kind != GGUF_NORMAL_TOKEN:
            continue
        for cut in range(1, len(token)):
            left, right = vocab.get(token[:cut]), vocab.get(token[cut:])
            if left is not None and right is not None:
                merges.append((index, left, right))
    merges.sort()
    unk = tokens[fields.get("tokenizer.ggml.unknown_token_id", 3)]
    tokenizer = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=[(tokens[left], tokens[right]) for _, left, right in merges],
            unk_token=unk,
            fuse_unk=True,
            byte_fallback=True,
        )
    )
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    kinds = list(zip(tokens, types, strict=True))
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, k in kinds if k == GGUF_CONTROL_TOKEN]
    )
    tokenizer.add_tokens(
        # normalized: a run of spaces ("▁▁" after the normalizer) matches as one token
        [AddedToken(t, normalized=True) for t, k in kinds if k == GGUF_USER_DEFINED_TOKEN]
    )
    return tokenizer


def gguf_chat_template(path: Path) -> str | None:
    return _gguf_fields(str(path)).get("tokenizer.chat_template")


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Inverse of the GPT-2 byte-to-unicode table used by byte-level BPE vocabularies."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {chr(code): byte for byte, code in zip(printable, codes, strict=True)}


def is_byte_level(tokenizer: Tokenizer) -> bool:
    """Whether vocabulary pieces are GPT-2 byte-level strings ('Ġberry') rather than text."""
    # Serialise only the small components, not the whole tokenizer (11 MB for Qwen3).
    parts = [tokenizer.pre_tokenizer, tokenizer.decoder]
    return any('"ByteLevel"' in part.__getstate__().decode() for part in parts if part is not None)


@dataclass(frozen=True)
class TokenText:
    """What one vocabulary entry means as text, or why it is not text."""

    text: str | None  # decoded text; None when the entry is not whole text
    reason: str | None  # why text is None: "special", "byte_fallback", "partial_utf8"


def token_text(piece: str, *, byte_level: bool, special: bool) -> TokenText:
    """Decode one raw vocabulary piece (e.g. 'Ġberry' or '▁berry') to its text."""
    if special:
        return TokenText(None, "special")
    if byte_level:
        table = _byte_decoder()
        if any(ch not in table for ch in piece):
            return TokenText(None, "special")
        try:
            return TokenText(bytes(table[ch] for ch in piece).decode("utf-8"), None)
        except UnicodeDecodeError:
            return TokenText(None, "partial_utf8")  # a fragment of a multi-byte character
    if piece.startswith("<0x") and piece.endswith(">") and len(piece) == 6:
        return TokenText(None, "byte_fallback")  # sentencepiece byte-fallback piece
    return TokenText(piece.replace("▁", " "), None)


def vocabulary(tokenizer: Tokenizer) -> list[tuple[int, str, TokenText]]:
    """Every (id, raw piece, decoded text) in the tokenizer, added tokens included."""
    byte_level = is_byte_level(tokenizer)
    # Every added token counts as special: Qwen3's <think> and <tool_call> are "added" but not
    # flagged special, and none of them is a piece of English text.
    specials = set(tokenizer.get_added_tokens_decoder())
    entries = []
    vocab = sorted(tokenizer.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
    for piece, token_id in vocab:
        text = token_text(piece, byte_level=byte_level, special=token_id in specials)
        entries.append((token_id, piece, text))
    return entries


def word_pieces(tokenizer: Tokenizer, word: str) -> list[str]:
    """The decoded text of each token the tokenizer splits `word` into (no leading space)."""
    ids = tokenizer.encode(word, add_special_tokens=False).ids
    return [tokenizer.decode([token_id], skip_special_tokens=False) for token_id in ids]


def stripped_pieces(tokenizer: Tokenizer, word: str) -> list[str]:
    """`word_pieces` with each piece's surrounding whitespace removed: the letters each token
    holds (what the token-boundary bins of the evaluation sets are worked out from)."""
    return [piece.strip() for piece in word_pieces(tokenizer, word)]
