"""Stage `build_dataset`: spelling training set and held-out spelling/position/count sets.

Training data is spelling only, over the English-only token strings from `filter_tokens`.
Evaluation words are real English words (wordfreq) that the tokenizer splits into >= 2 tokens,
at least one a multi-letter alphabetic token, and that never appear (case-insensitively) as a
token string. The stage re-checks both properties on its own output and fails if either breaks.
No torch: this runs on a bare Mac.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from letterwise.data.dataset import build, dataset_features, fingerprint
from letterwise.io import atomic_dir, hub_offline_by_default, write_jsonl, write_metrics
from letterwise.params import load_params

DATASET_DIR = Path("data/dataset")
METRICS_FILE = Path("metrics/build_dataset.json")


def save_dataset(splits: dict[str, list[dict]], card_text: str) -> None:
    """HF `datasets` on disk plus JSONL, fingerprinted from content so the bytes are stable."""
    from datasets import Dataset, DatasetDict, disable_progress_bars

    disable_progress_bars()  # rich shows progress; datasets' tqdm bars would interleave
    features = dataset_features()
    dataset = DatasetDict()
    for name, rows in splits.items():
        check_row_keys(name, rows, set(features))
        table = Dataset.from_list(rows, features=features)
        # from_list draws a random fingerprint, which save_to_disk writes into state.json.
        dataset[name] = Dataset(
            table.data, info=table.info, split=name, fingerprint=fingerprint(rows)
        )
    with atomic_dir(DATASET_DIR) as tmp:
        dataset.save_to_disk(str(tmp / "hf"))
        for name, rows in splits.items():
            write_jsonl(tmp / "jsonl" / f"{name}.jsonl", rows)
        (tmp / "README.md").write_text(card_text, encoding="utf-8")


def check_row_keys(split: str, rows: list[dict], expected: set[str]) -> None:
    """Every row must carry exactly the dataset's columns: `Dataset.from_list` takes the
    columns from the first row alone, so a row kind with a key too few (or too many) would
    drop a column or fail deep inside `datasets`."""
    for row in rows:
        if set(row) != expected:
            missing, extra = sorted(expected - set(row)), sorted(set(row) - expected)
            raise ValueError(
                f"{split} row {row.get('id')!r} (task {row.get('task')!r}) does not have the "
                f"dataset's columns: missing {missing}, unexpected {extra}"
            )


def headline(metrics: dict) -> dict:
    """What a run is compared by; sizes per split and task, frequency bands and the leakage
    details stay in metrics/details/build_dataset.json."""
    sizes = metrics["sizes"]
    return {
        "training_strings": metrics["training_strings"],
        "train_examples": sizes["train"]["total"],
        "test_questions": sizes["test"]["total"],
        "leaked_words": metrics["leakage"]["leaked_words"],
    }


def print_summary(metrics: dict, console: Console) -> None:
    table = Table(title=f"build_dataset: {metrics['model']}")
    tasks = ("spelling", "position", "count") + (("replay",) if "replay" in metrics else ())
    for column in ("split", *tasks, "total"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for split, counts in metrics["sizes"].items():
        table.add_row(split, *(f"{counts.get(k, 0):,}" for k in (*tasks, "total")))
    console.print(table)
    leak = metrics["leakage"]
    console.print(
        f"held-out words: {leak['held_out_words']}  leaked: {leak['leaked_words']}  "
        f"multi-token: {leak['multi_token_share']:.0%}  "
        f"tokens/word: {leak['mean_tokens_per_word']}",
        style="bold green",
    )


def main(argv: list[str] | None = None) -> None:
    hub_offline_by_default()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml", help="path to params.yaml")
    args = parser.parse_args(argv)
    params = load_params(args.params)  # validated before any tokenizer is touched
    console = Console()
    splits, metrics = build(params, console)
    from letterwise.cards.dataset_card import dataset_card

    save_dataset(splits, dataset_card(params, metrics))
    write_metrics(METRICS_FILE, metrics, headline(metrics))
    print_summary(metrics, console)


if __name__ == "__main__":
    main()
