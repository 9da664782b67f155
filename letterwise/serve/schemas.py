"""Request and response models of the API: strict validation, so bad input gets a clear 422.

A request asks one question (`word`, plus `index` or `letter`) or a small batch (`items`, up to
MAX_ITEMS), with optional decoding settings. Unknown fields are rejected, words are ASCII letters
only, and any field asking for thinking mode is refused by name (non-thinking is the only mode
served) with the error type THINKING_REFUSED, which the server counts.
"""

from __future__ import annotations

import re
import time
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    StringConstraints,
    Tag,
    model_validator,
)
from pydantic_core import PydanticCustomError

MODE = "non-thinking"
MAX_WORD_LENGTH = 64
MAX_ITEMS = 32  # questions in one request; the server batches requests together on top
MAX_SEED = 2**31 - 1
THINKING_REFUSED = "thinking_refused"  # pydantic error type of a refused thinking request
POLICY = (
    "this API serves the model in non-thinking mode only (Qwen3 enable_thinking=False); "
    "thinking mode is refused"
)

Word = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z]+$", min_length=1, max_length=MAX_WORD_LENGTH)
]
SpellingWord = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z]+$", min_length=2, max_length=MAX_WORD_LENGTH)
]
Letter = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]$")]

# Normalised field names (lowercase letters only) that ask for a thinking/reasoning mode.
_THINKING_NAMES = {"think", "thinking", "enablethinking", "thinkingmode", "thinkingbudget",
                   "reasoning", "enablereasoning", "reasoningeffort", "reasoningmode"}  # fmt: skip


def _normalised(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower())


def refuse_thinking(data: Any) -> Any:
    """Raise THINKING_REFUSED if a field of `data` (a request or item dict) asks for thinking."""
    if not isinstance(data, dict):
        return data
    for key, value in data.items():
        name = _normalised(str(key))
        if name in _THINKING_NAMES or name.startswith("think") or "thinking" in name:
            raise PydanticCustomError(
                THINKING_REFUSED,
                "field '{field}' asks for thinking: {policy}; remove the field",
                {"field": str(key), "policy": POLICY},
            )
        if name == "mode" and value != MODE:
            raise PydanticCustomError(
                THINKING_REFUSED,
                "mode '{value}' is not served: {policy}; send mode 'non-thinking' or leave it out",
                {"value": value, "policy": POLICY},
            )
    return data


class Strict(BaseModel):
    """No unknown fields, no type coercion ("3" is not 3), no thinking fields."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _no_thinking(cls, data: Any) -> Any:
        return refuse_thinking(data)


# ----------------------------------------------------------------------------- questions


class SpellingItem(Strict):
    word: SpellingWord = Field(description="the word to spell: 2 to 64 ASCII letters")


class PositionItem(Strict):
    word: Word = Field(description="1 to 64 ASCII letters")
    index: int = Field(ge=1, le=MAX_WORD_LENGTH, description="1-based letter position")

    @model_validator(mode="after")
    def _index_in_word(self) -> PositionItem:
        if self.index > len(self.word):
            raise ValueError(
                f"index {self.index} is past the end of {self.word!r} ({len(self.word)} letters);"
                f" index counts from 1 to {len(self.word)}"
            )
        return self


class CountItem(Strict):
    word: Word = Field(description="1 to 64 ASCII letters")
    letter: Letter = Field(description="the single ASCII letter to count")


class Options(Strict):
    """Decoding settings shared by every endpoint: the model's non-thinking sampling by default."""

    mode: Literal["non-thinking"] = Field(MODE, description="the only mode served")
    decoding: Literal["sampled", "greedy"] = Field(
        "sampled", description="sampled (the model's recommended non-thinking values) or greedy"
    )
    # Lower bounds keep logits / temperature finite (a 1e-300 temperature overflows to inf).
    temperature: float | None = Field(None, ge=0.01, le=2.0, description="sampled only")
    top_p: float | None = Field(None, ge=0.01, le=1.0, description="sampled only")
    top_k: int | None = Field(None, ge=0, le=1000, description="sampled only; 0 = off")
    min_p: float | None = Field(None, ge=0.0, le=1.0, description="sampled only; 0 = off")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="random seed of sampled decoding")

    _received_at: float = PrivateAttr(default_factory=time.monotonic)  # queue-time start

    @model_validator(mode="after")
    def _greedy_takes_no_knobs(self) -> Options:
        knobs = [
            n for n in ("temperature", "top_p", "top_k", "min_p") if getattr(self, n) is not None
        ]
        if self.decoding == "greedy" and knobs:
            raise ValueError(
                f"{', '.join(knobs)}: sampling settings, for decoding 'sampled' only; "
                "greedy decoding takes none"
            )
        return self

    @property
    def received_at(self) -> float:
        return self._received_at

    def questions(self) -> list[Any]:
        """The questions asked, in order: the request itself, or its `items`."""
        return list(getattr(self, "items", None) or [self])


class SpellingOptions(Options):
    strategy: Literal["direct"] = Field("direct", description="spelling is always asked directly")


class TransferOptions(Options):
    strategy: Literal["direct", "spell_first"] = Field(
        "direct", description="direct: the question as asked; spell_first: spell, then answer"
    )


_ITEMS = dict(min_length=1, max_length=MAX_ITEMS, description=f"1 to {MAX_ITEMS} questions")


class SpellingQuestion(SpellingItem, SpellingOptions):
    """One word to spell."""


class SpellingBatch(SpellingOptions):
    """Up to 32 words to spell, in `items`."""

    items: list[SpellingItem] = Field(**_ITEMS)


class PositionQuestion(PositionItem, TransferOptions):
    """One position question."""


class PositionBatch(TransferOptions):
    """Up to 32 position questions, in `items`."""

    items: list[PositionItem] = Field(**_ITEMS)


class CountQuestion(CountItem, TransferOptions):
    """One count question."""


class CountBatch(TransferOptions):
    """Up to 32 count questions, in `items`."""

    items: list[CountItem] = Field(**_ITEMS)


def _shape(value: Any) -> str:
    """Which request shape a body has: a batch when it has `items`, else one question."""
    if isinstance(value, dict):
        return "batch" if "items" in value else "question"
    return "batch" if "items" in getattr(type(value), "model_fields", {}) else "question"


def _one_or_batch(question: type[Options], batch: type[Options]) -> Any:
    return Annotated[
        Annotated[question, Tag("question")] | Annotated[batch, Tag("batch")],
        Discriminator(_shape),
    ]


SpellingRequest = _one_or_batch(SpellingQuestion, SpellingBatch)
PositionRequest = _one_or_batch(PositionQuestion, PositionBatch)
CountRequest = _one_or_batch(CountQuestion, CountBatch)


# ----------------------------------------------------------------------------- responses


class ModelInfo(BaseModel):
    name: str = Field(description="the base model the adapter was trained on")
    adapter_revision: str = Field(description="content hash of the published adapter")
    mode: Literal["non-thinking"] = MODE


class SamplingUsed(BaseModel):
    decoding: Literal["sampled", "greedy"]
    temperature: float | None
    top_p: float | None
    top_k: int | None
    min_p: float | None
    seed: int


class Timings(BaseModel):
    queue_s: float = Field(description="from arrival to the start of its model batch")
    generation_s: float = Field(description="generation of the batch holding its questions")
    batch_size: int = Field(description="questions generated together with this request's")
    batch_requests: int = Field(description="requests batched together by the server")


class Result(BaseModel):
    word: str = Field(description="the word asked about, lowercased")
    raw: str = Field(description="the model's raw answer text")
    in_format: bool = Field(description="whether the answer came in the asked format")
    correct: bool = Field(description="whether the parsed answer equals the ground truth")
    strategy: Literal["direct", "spell_first"]


class SpellingResult(Result):
    letters: list[str] | None = Field(description="the letters spelled; null if unparseable")
    expected: list[str]


class PositionResult(Result):
    index: int
    letter: str | None = Field(description="the letter answered; null if unparseable")
    expected: str
    spelled: str | None = Field(None, description="spell_first: the letters it spelled first")


class CountResult(Result):
    letter: str
    count: int | None = Field(description="the count answered; null if unparseable")
    expected: int
    spelled: str | None = Field(None, description="spell_first: the letters it spelled first")


class Answer(BaseModel):
    model: ModelInfo
    sampling: SamplingUsed
    timings: Timings


class SpellingResponse(Answer):
    results: list[SpellingResult]


class PositionResponse(Answer):
    results: list[PositionResult]


class CountResponse(Answer):
    results: list[CountResult]


REQUESTS: dict[str, Any] = {
    "spelling": SpellingRequest,
    "position": PositionRequest,
    "count": CountRequest,
}
RESPONSES: dict[str, type[Answer]] = {
    "spelling": SpellingResponse,
    "position": PositionResponse,
    "count": CountResponse,
}
