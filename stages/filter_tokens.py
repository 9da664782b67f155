"""Stage `filter_tokens`: the English-only subset of the model's vocabulary.

Keeps tokens made only of ASCII letters once the leading-space marker is removed, at least
`min_length` letters long. Case variants and space variants ('berry', 'Berry', ' berry') merge
into one lowercase string that records every token id behind it. Everything dropped is counted
by reason. No torch: this runs on a bare Mac.
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from stages.atomic import atomic_dir, write_json, write_jsonl
from stages.params import FilterTokensParams, load_params
from stages.presets import resolve_preset
from stages.vocab import TokenText, load_vocab_tokenizer, vocabulary

TOKENS_DIR = Path("data/tokens")
METRICS_FILE = Path("metrics/filter_tokens.json")
PLOTS_DIR = Path("dvclive/filter_tokens")

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


def write_outputs(rows: list[dict], summary: dict) -> None:
    from dvclive import Live

    with atomic_dir(TOKENS_DIR) as tmp:
        write_jsonl(tmp / "tokens.jsonl", rows)
    write_json(METRICS_FILE, summary)
    with Live(dir=str(PLOTS_DIR), save_dvc_exp=False, dvcyaml=None, report=None) as live:
        datapoints = [{"length": int(k), "tokens": v} for k, v in summary["by_length"].items()]
        live.log_plot(
            "token_lengths",
            datapoints,
            x="length",
            y="tokens",
            template="bar_horizontal",
            title="English-only token strings by length",
        )


def print_summary(summary: dict, console: Console) -> None:
    table = Table(title=f"filter_tokens: {summary['model']}")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("vocabulary entries", f"{summary['vocab_size']:,}")
    table.add_row("kept token ids", f"{summary['kept_tokens']:,}")
    table.add_row("kept distinct strings", f"{summary['kept_strings']:,}", style="bold green")
    for rule, count in summary["by_rule"].items():
        table.add_row(f"  admitted as {rule}", f"{count:,}")
    for reason, count in summary["dropped"].items():
        table.add_row(f"dropped: {reason}", f"{count:,}", style="dim")
    console.print(table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="path to params.yaml")
    args = parser.parse_args(argv)
    params = load_params(args.params)  # validated before any tokenizer is touched
    console = Console()
    preset = resolve_preset(params.model)
    with console.status(f"loading the {preset.name} tokenizer"):
        tokenizer = load_vocab_tokenizer(preset)
        entries = vocabulary(tokenizer)
    rows, dropped = filter_vocabulary(entries, params.filter_tokens)
    if not rows:
        raise SystemExit(
            f"filter_tokens: no English-only tokens found in {preset.name}'s vocabulary"
        )
    summary = summarize(rows, dropped, len(entries), preset.name)
    write_outputs(rows, summary)
    print_summary(summary, console)


if __name__ == "__main__":
    main()
