"""The English-only subset of a tokenizer's vocabulary (the training strings), torch-free.

Keeps tokens made only of ASCII letters once the leading-space marker is removed, at least
`min_length` letters long. Case variants and space variants ('berry', 'Berry', ' berry') merge
into one lowercase string that records every token id behind it. Everything dropped is counted
by reason.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from letterwise.data.vocab import TokenText
from letterwise.params import FilterTokensParams

DROP_REASONS = (
    "special",
    "byte_fallback",
    "partial_utf8",
    "whitespace",
    "non_ascii",
    "digits",
    "punctuation",
    "too_short",
    "too_long",
)


def classify(entry: TokenText, params: FilterTokensParams) -> tuple[str | None, str | None, bool]:
    """(kept lowercase string or None, drop reason or None, had a leading space)."""
    if entry.text is None:
        return None, entry.reason, False
    leading_space = entry.text.startswith(" ")
    text = entry.text[1:] if leading_space else entry.text
    if not text.strip():
        return None, "whitespace", leading_space
    if not text.isascii():
        return None, "non_ascii", leading_space
    if any(ch.isdigit() for ch in text):
        return None, "digits", leading_space
    if not text.isalpha():
        return None, "punctuation", leading_space  # includes spaces inside, apostrophes, symbols
    if len(text) < params.min_length:
        return None, "too_short", leading_space
    if len(text) > params.max_length:
        return None, "too_long", leading_space
    return text.lower(), None, leading_space


def admission_rule(forms: set[str]) -> str:
    """How a string got in: as a bare token, only after stripping the leading space, or both."""
    if forms == {"bare"}:
        return "bare"
    if forms == {"leading_space"}:
        return "leading_space"
    return "bare+leading_space"


def filter_vocabulary(
    entries: list[tuple[int, str, TokenText]], params: FilterTokensParams
) -> tuple[list[dict], Counter]:
    """Rows (one per distinct lowercase string, sorted) and the drop counts by reason."""
    ids: dict[str, list[int]] = defaultdict(list)
    variants: dict[str, set[str]] = defaultdict(set)
    forms: dict[str, set[str]] = defaultdict(set)
    dropped: Counter = Counter({reason: 0 for reason in DROP_REASONS})
    for token_id, _piece, entry in entries:
        kept, reason, leading_space = classify(entry, params)
        if kept is None:
            dropped[reason] += 1
            continue
        ids[kept].append(token_id)
        variants[kept].add(entry.text)
        forms[kept].add("leading_space" if leading_space else "bare")
    rows = [
        {
            "string": string,
            "length": len(string),
            "token_ids": sorted(ids[string]),
            "variants": sorted(variants[string]),
            "rule": admission_rule(forms[string]),
        }
        for string in sorted(ids)
    ]
    return rows, dropped


def summarize(rows: list[dict], dropped: Counter, vocab_size: int, model: str) -> dict:
    by_length = Counter(row["length"] for row in rows)
    return {
        "model": model,
        "vocab_size": vocab_size,
        "kept_tokens": sum(len(row["token_ids"]) for row in rows),
        "kept_strings": len(rows),
        "dropped_tokens": sum(dropped.values()),
        "dropped": dict(sorted(dropped.items())),
        "by_rule": dict(sorted(Counter(row["rule"] for row in rows).items())),
        "by_length": {str(length): by_length[length] for length in sorted(by_length)},
        "mean_length": round(sum(r["length"] for r in rows) / max(len(rows), 1), 3),
    }
