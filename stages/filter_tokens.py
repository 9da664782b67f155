"""Stage `filter_tokens`: the English-only subset of the model's vocabulary.

Keeps tokens made only of ASCII letters once the leading-space marker is removed, at least
`min_length` letters long. Case variants and space variants ('berry', 'Berry', ' berry') merge
into one lowercase string that records every token id behind it. Everything dropped is counted
by reason. No torch: this runs on a bare Mac.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from letterwise.data.tokens import filter_vocabulary, summarize
from letterwise.data.vocab import load_vocab_tokenizer, vocabulary
from letterwise.io import atomic_dir, hub_offline_by_default, write_jsonl, write_metrics
from letterwise.params import load_params
from letterwise.presets import resolve_preset

TOKENS_DIR = Path("data/tokens")
METRICS_FILE = Path("metrics/filter_tokens.json")
PLOTS_DIR = Path("dvclive/filter_tokens")


def headline(summary: dict) -> dict:
    """What a run is compared by; the counts per length, rule and drop reason stay in the
    details file (metrics/details/filter_tokens.json)."""
    return {key: summary[key] for key in ("kept_strings", "kept_tokens")}


def write_outputs(rows: list[dict], summary: dict) -> None:
    from dvclive import Live

    with atomic_dir(TOKENS_DIR) as tmp:
        write_jsonl(tmp / "tokens.jsonl", rows)
    write_metrics(METRICS_FILE, summary, headline(summary))
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
    hub_offline_by_default()
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
