"""Chat-template rendering shared by training and evaluation (no torch needed).

Qwen3 has two modes. Non-thinking (`enable_thinking=False`) makes the template end the
generation prompt with an empty `<think>\n\n</think>\n\n` block; in training that block is part
of the prompt, so the loss covers only the answer and the end-of-turn token.
"""

from __future__ import annotations

from typing import Any

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def user_messages(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": question}]


def prompt_text(tokenizer: Any, question: str, *, thinking: bool = False) -> str:
    """The rendered prompt a model continues from, for one user question.

    `thinking` is passed to the template as `enable_thinking`; templates without thinking
    modes ignore it, and callers reject thinking mode for such models before rendering.
    """
    return tokenizer.apply_chat_template(
        user_messages(question),
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=thinking,
    )


def training_pair(tokenizer: Any, question: str, answer: str) -> tuple[str, str]:
    """(prompt, completion) for one non-thinking training turn.

    The completion is whatever the template adds after the prompt when the assistant turn is
    present: the answer plus the end-of-turn marker, so the model learns to stop.
    """
    prompt = prompt_text(tokenizer, question, thinking=False)
    full = tokenizer.apply_chat_template(
        user_messages(question) + [{"role": "assistant", "content": answer}],
        tokenize=False,
        enable_thinking=False,
    )
    if not full.startswith(prompt):
        raise ValueError(
            "the chat template renders the assistant turn in a way that does not extend the "
            "generation prompt; cannot separate prompt from answer for completion-only loss"
        )
    completion = full[len(prompt) :]
    if answer not in completion:
        raise ValueError(f"the chat template dropped the answer {answer!r} from the completion")
    return prompt, completion
