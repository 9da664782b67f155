"""The one typed schema for params.yaml, loaded and validated by every stage before any work.

An unknown key, a wrong type or an out-of-range value raises `ParamsError` naming the key and
what is allowed, before a tokenizer or model is touched. Light imports only: the data stages
run on a machine without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from letterwise.presets import PRESETS, looks_like_model_ref

PARAMS_FILE = Path("params.yaml")

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FilterTokensParams(Section):
    min_length: int = Field(2, ge=2, le=32, description="shortest letter string kept")
    max_length: int = Field(32, ge=2, le=64, description="longest letter string kept")

    @model_validator(mode="after")
    def _ordered(self) -> FilterTokensParams:
        if self.min_length > self.max_length:
            raise ValueError(
                f"min_length ({self.min_length}) must not exceed max_length ({self.max_length})"
            )
        return self


class BuildDatasetParams(Section):
    examples_per_token: int = Field(2, ge=1, le=16, description="training phrasings per string")
    max_train_tokens: int | None = Field(
        2000, ge=1, description="cap on distinct training strings; null = the whole subset"
    )
    word_pool: int = Field(40000, ge=1000, le=500000, description="top-N wordfreq words scanned")
    min_word_length: int = Field(4, ge=2, le=30)
    max_word_length: int = Field(14, ge=3, le=40)
    validation_words: int = Field(100, ge=1, le=100000)
    test_words: int = Field(200, ge=1, le=100000)
    count_absent_rate: Fraction = Field(
        0.25, description="share of count questions about absent letters"
    )
    count_multiple_share: Fraction = Field(
        0.4,
        description="least share of count questions whose answer is >= 2 (presence alone would "
        "otherwise score most of them)",
    )
    position_questions_per_word: int = Field(1, ge=1, le=10)
    count_questions_per_word: int = Field(1, ge=1, le=10)
    replay_share: float = Field(
        0.0,
        ge=0.0,
        le=0.9,
        description="share of the training set that is replay turns (no letter-level content, "
        "answered by the base model itself); 0 = pure spelling",
    )
    # The experiment arm (issue "A verdict that holds"): what the train split teaches, with the
    # same held-out splits, recipe and steps in every arm.
    arm: Literal["spelling", "negative_control", "positive_control"] = Field(
        "spelling",
        description="spelling = the treatment; negative_control = letter-free replay turns only; "
        "positive_control = position/count questions about the training strings",
    )
    control_rows: int = Field(
        1000,
        ge=1,
        le=1000000,
        description="train rows of a control arm (the default run trains on 80 x 8 = 640 rows, "
        "so no row repeats; replay answers cost base-model generation at train time)",
    )

    @model_validator(mode="after")
    def _ordered(self) -> BuildDatasetParams:
        if self.min_word_length > self.max_word_length:
            raise ValueError(
                f"min_word_length ({self.min_word_length}) must not exceed "
                f"max_word_length ({self.max_word_length})"
            )
        return self


LORA_TARGETS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


class LoraParams(Section):
    r: int = Field(16, ge=1, le=512)
    alpha: int = Field(32, ge=1, le=1024)
    dropout: Fraction = 0.0
    target_modules: list[str] = Field(default_factory=lambda: sorted(LORA_TARGETS), min_length=1)

    @field_validator("target_modules")
    @classmethod
    def _known_targets(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - LORA_TARGETS)
        if unknown:
            raise ValueError(f"unknown module(s) {unknown}; allowed: {sorted(LORA_TARGETS)}")
        return value


class TrainParams(Section):
    backend: Literal["auto", "transformers", "unsloth"] = "auto"
    lora: LoraParams = LoraParams()
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0)
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: Fraction = 0.1
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    max_steps: int = Field(80, ge=-1, description="-1 = train for `epochs` epochs")
    epochs: float = Field(1.0, gt=0.0, le=100.0)
    batch_size: int = Field(8, ge=1, le=1024)
    grad_accum: int = Field(1, ge=1, le=1024)
    max_seq_length: int = Field(128, ge=16, le=32768)
    save_steps: int = Field(20, ge=1, description="checkpoint every N steps (resume point)")
    load_in_4bit: bool = Field(True, description="4-bit base weights (Unsloth backend only)")
    threads: int | None = Field(None, ge=1, le=512, description="CPU threads; null = all")
    replay_answer_end: Literal["auto", "turn", "first_line"] = Field(
        "auto",
        description="where a base model's replay answer ends: its chat turn, or its first line "
        "(a pretrained model prompted as Question/Answer never ends a turn); auto = first_line "
        "for the plain question/answer format, turn for chat templates",
    )
    seed: int | None = Field(
        None, ge=0, description="training seed (LoRA init, data order); null = the top-level seed"
    )

    @model_validator(mode="after")
    def _steps(self) -> TrainParams:
        if self.max_steps == 0:
            raise ValueError("max_steps must be >= 1, or -1 to train for `epochs` epochs")
        return self


class EvalParams(Section):
    split: Literal["validation", "test"] = "test"
    mode: Literal["non-thinking", "thinking"] = "non-thinking"
    decoding: Literal["greedy", "sampled"] = "greedy"
    # null = Qwen3's recommended value for the mode (see letterwise/generation.py)
    temperature: float | None = Field(None, gt=0.0, le=5.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0, le=100000)
    min_p: Fraction | None = None
    n_samples: int = Field(1, ge=1, le=64, description="samples per question (sampled decoding)")
    # Qwen3's traces on letter questions often run past 1,000 tokens; an unclosed <think> is
    # scored wrong (metrics: unclosed_think_rate). 4,096-8,192 recommended; 16..32768 allowed.
    thinking_budget: int = Field(4096, ge=16, le=32768, description="max new tokens when thinking")
    batch_size: int = Field(64, ge=1, le=4096)
    max_questions: int | None = Field(
        200, ge=1, description="per task, from the start of the split; null = all"
    )
    seed: int = Field(0, ge=0)
    # Instruments for position/count: generation with the question as asked ("direct", always)
    # and after spelling the word first ("spell_first"); choice scoring is format-free.
    prompting: list[Literal["direct", "spell_first"]] = Field(
        default_factory=lambda: ["direct"], min_length=1
    )
    choice_scoring: bool = Field(
        False, description="log-likelihood scoring of answer candidates (not used by the verdict)"
    )
    # Format-neutral answer slots for position/count (letterwise.eval.cloze): candidates scored
    # after a prefilled reply stem; calibrated against a content-free word; with the correct
    # spelling in context (oracle); after the model's own spelling turn (two_turn).
    cloze: list[Literal["cloze", "cloze_calibrated", "oracle", "two_turn"]] = Field(
        default_factory=lambda: ["cloze", "cloze_calibrated"]
    )

    @field_validator("prompting", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("cloze")
    @classmethod
    def _distinct_cloze(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"each cloze instrument appears once (got {value})")
        return value

    @field_validator("prompting")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"each prompting appears once (got {value})")
        if "direct" not in value:
            raise ValueError(
                "direct generation is the headline instrument and always runs: "
                f"use [direct] or [direct, spell_first] (got {value})"
            )
        return value

    @model_validator(mode="after")
    def _samples(self) -> EvalParams:
        if self.decoding == "greedy" and self.n_samples != 1:
            raise ValueError("n_samples > 1 needs decoding: sampled (greedy gives one answer)")
        return self


class PublishParams(Section):
    repo_id: str | None = Field(None, description="Hub model repo (user/name); null = local only")
    dataset_repo_id: str | None = Field(None, description="Hub dataset repo; null = local only")
    private: bool = True
    merge: bool = Field(False, description="also write merged 16-bit weights")
    license: str = "apache-2.0"
    load_back_questions: int = Field(6, ge=1, le=1000)

    @field_validator("repo_id", "dataset_repo_id")
    @classmethod
    def _repo_shape(cls, value: str | None) -> str | None:
        if value is not None and (value.count("/") != 1 or " " in value):
            raise ValueError(f"{value!r} is not a Hub repo id of the form 'user/name'")
        return value


class VerdictParams(Section):
    """The verdict rule's pre-registered numbers (letterwise.eval.verdict); no stage reads them,
    the verdict command and the study plan do."""

    primary_instrument: Literal["cloze", "cloze_calibrated"] = (
        "cloze_calibrated"
    )
    # one measure for both tasks, or one per task ({position: ..., count: ...})
    primary_outcome: (
        Literal["accuracy", "probability"]
        | dict[Literal["position", "count"], Literal["accuracy", "probability"]]
    ) = {"position": "probability", "count": "accuracy"}

    @model_validator(mode="after")
    def _outcome_names_both_tasks(self) -> "VerdictParams":
        if isinstance(self.primary_outcome, dict) and set(self.primary_outcome) != {
            "position", "count"
        }:
            raise ValueError(
                "verdict.primary_outcome per task must name both position and count, got "
                + ", ".join(sorted(self.primary_outcome))
            )
        return self
    margin_share: float = Field(0.5, gt=0.0, le=1.0, description="margin / habit-free PC effect")
    alpha: float = Field(0.05, gt=0.0, lt=0.5, description="two-sided; TOST at alpha each side")
    power: float = Field(0.8, ge=0.5, lt=1.0, description="for the minimum detectable effect")


class ProbeParams(Section):
    """The `probe` stage (letterwise.probe): linear probes and a logit lens per layer; the
    defaults keep it to a few minutes per model on a 2-core CPU for smollm2-135m."""

    train_strings: int = Field(
        400, ge=20, le=100000, description="training-vocabulary strings the probes are fitted on"
    )
    val_share: float = Field(
        0.2, gt=0.0, lt=0.9, description="share of the training strings that choose C"
    )
    words: int = Field(200, ge=10, le=100000, description="held-out words the probes are tested on")
    split: Literal["validation", "test"] = Field("test", description="the held-out words' split")
    layer_step: int = Field(
        4, ge=1, le=64, description="probe every Nth layer (the embeddings and the last always)"
    )
    count_letters: str = Field(
        "aeinorst", min_length=1, max_length=26, description="letters of the count probe"
    )
    cs: list[Annotated[float, Field(gt=0.0)]] = Field(
        default_factory=lambda: [0.01, 0.1, 1.0],
        min_length=1,
        description="inverse regularisation strengths tried on the validation slice",
    )
    lens_questions: int = Field(
        25, ge=0, le=100000, description="position and count questions each for the logit lens"
    )
    lens_stems: int = Field(
        1, ge=1, le=3, description="cloze stems per lens question (each one a forward pass)"
    )
    bootstrap: int = Field(1000, ge=100, le=100000, description="resamples of the word bootstrap")
    batch_size: int = Field(32, ge=1, le=4096)

    @field_validator("count_letters")
    @classmethod
    def _letters(cls, value: str) -> str:
        if not (value.isascii() and value.isalpha() and value.islower()):
            raise ValueError(f"count_letters must be lower-case letters a-z, got {value!r}")
        if len(set(value)) != len(value):
            raise ValueError(f"each count letter appears once (got {value!r})")
        return value


class Params(Section):
    model: str = Field("smollm2-135m", description="a preset name, a Hub id or a local directory")
    seed: int = Field(42, ge=0)
    filter_tokens: FilterTokensParams = FilterTokensParams()
    build_dataset: BuildDatasetParams = BuildDatasetParams()
    train: TrainParams = TrainParams()
    eval: EvalParams = EvalParams()
    publish: PublishParams = PublishParams()
    verdict: VerdictParams = VerdictParams()
    probe: ProbeParams = ProbeParams()

    @property
    def training_seed(self) -> int:
        """The seed of training (LoRA init, data order): train.seed, else the top-level seed,
        so seeds can vary training alone while every arm shares the same data."""
        return self.seed if self.train.seed is None else self.train.seed

    @field_validator("model")
    @classmethod
    def _model_ref(cls, value: str) -> str:
        if not looks_like_model_ref(value):
            raise ValueError(
                f"{value!r} is neither a preset ({', '.join(PRESETS)}), "
                "a local model directory, nor a Hub id of the form 'org/name'"
            )
        return value


class ParamsError(SystemExit):
    """params.yaml is missing, malformed or invalid; the message names every bad key.

    A SystemExit, so a stage stops with the message alone (exit status 1, no traceback).
    """


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key; allowed keys here: {', '.join(_allowed_keys(error['loc']))}"
    got = error.get("input")
    got_text = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"{key}: {error['msg']}{got_text}"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = Params
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return list(model.model_fields)


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    """Validate already-loaded YAML content."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [_describe(error) for error in exc.errors()]
        raise ParamsError(f"{source} is invalid:\n  " + "\n  ".join(lines)) from None


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate params.yaml; raises ParamsError with every problem named."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path} not found (run from the repository root)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from None
    return parse_params(raw, str(path))
