"""The three letterwise tasks: spelling (trained), position and count (transfer, never trained).

Each task module exposes TASK, eval_questions(word, rng, n, **options), parse(output) and
is_correct(output, expected); spelling also exposes training_examples and SPELLING_FORMATS.
"""

from __future__ import annotations

from types import ModuleType

from letterwise.tasks import count, position, spelling

TASKS: dict[str, ModuleType] = {module.TASK: module for module in (spelling, position, count)}


def get_task(name: str) -> ModuleType:
    """The task module called `name`; ValueError naming the known tasks otherwise."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; expected one of {sorted(TASKS)}") from None
