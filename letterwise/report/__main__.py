"""python -m letterwise.report: render docs/report.md, its HTML twin and its figures, or print a
one-screen comparison of the runs (--compare)."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from letterwise.io import write_text
from letterwise.numbers import num
from letterwise.report import __doc__ as PACKAGE_DOC
from letterwise.report.figures import figure_plan, save_png
from letterwise.report.loading import (
    INSTRUMENTS,
    TASKS,
    Run,
    instrument_sections,
    load_inputs,
    mark_changes,
    pick_reference,
    runs_from_exp_show,
    save_results,
)
from letterwise.report.sections import render
from letterwise.report.tables import setting

DEFAULT_LOSS = Path("dvclive/train/plots/metrics/loss.tsv")
DEFAULT_BREAKDOWNS = (
    Path("dvclive/eval_spelling/breakdowns.json"),
    Path("dvclive/eval_position/breakdowns.json"),
)
SHORT_INSTRUMENTS = {
    "direct": "direct",
    "spell_first": "spell-first",
    "choice": "choice",
    "teacher_forced": "forced",
    "cloze": "cloze",
    "cloze_calibrated": "cloze cal.",
    "oracle": "oracle",
    "two_turn": "two-turn",
}


def compare_table(runs: list[Run]) -> Table:
    """One block per run, one row per task, for a terminal: the params the run changed against
    the reference, then per instrument the fine-tuned accuracy and the paired delta with its 95%
    CI (the numbers a run is compared by). Tasks as rows keep it inside 200 columns however
    many instruments a run measured; `dvc exp show` lists every headline column."""
    reference = pick_reference(runs)
    mark_changes(runs, reference)
    keys: list[str] = []
    for run in runs:
        for metrics in run.tasks().values():
            keys += [key for key in instrument_sections(metrics) if key not in keys]
    order = list(INSTRUMENTS)
    keys.sort(key=lambda k: order.index(k) if k in order else len(order))
    table = Table(title=f"tuned accuracy, delta vs base [95% CI]; changes vs {reference.name}")
    table.add_column("experiment", no_wrap=True)
    table.add_column("changes", overflow="fold", max_width=34)
    table.add_column("task", no_wrap=True)
    for key in keys:
        table.add_column(SHORT_INSTRUMENTS.get(key, key), justify="right", no_wrap=True)
    for run in runs:
        changes = "\n".join(f"{k}={setting(v)}" for k, v in sorted(run.changed.items()))
        tasks = run.tasks()
        for row, task in enumerate(t for t in TASKS if t in tasks):
            sections = instrument_sections(tasks[task])
            cells = [_compare_cell(sections.get(key)) for key in keys]
            first = row == 0
            table.add_row(
                run.name.replace(" = ", "\n= ") if first else "",
                (changes or "(reference)") if first else "",
                task,
                *cells,
            )
        table.add_section()
    return table


def _compare_cell(section: dict | None) -> str:
    if not section:
        return "–"
    d = section["delta"]
    return (
        f"{num(section['tuned']['accuracy'])} ({num(d['delta'], sign=True)})\n"
        f"[{num(d.get('ci_low'), 2, True)}, {num(d.get('ci_high'), 2, True)}]"
    )


def html_page(markdown_text: str) -> str:
    """The same report as a standalone HTML page (figures by relative path; no scripts, no CDN)."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown_text)
    # keep a value with its interval, and "< 0.001", on one line in narrow table cells
    body = re.sub(r"(\d|–) \[", "\\1&nbsp;[", body)
    body = re.sub(r"\[([+-]?[\d.]+|–), ([+-]?[\d.]+|–)\]", "[\\1,&nbsp;\\2]", body)
    body = body.replace("&lt; 0.001", "&lt;&nbsp;0.001")
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
        "line-height:1.45}table{border-collapse:collapse;font-size:.85em;display:block;"
        "overflow-x:auto}td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%;"
        "height:auto}code{font-size:.9em}blockquote{border-left:4px solid #ccc;margin-left:0;"
        "padding-left:1em;color:#333}p>em:only-child{color:#333}"
    )
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>letterwise report</title><style>{style}</style></head><body>{body}"
        "</body></html>\n"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m letterwise.report",
        description=(PACKAGE_DOC or "").split("\n\n")[0],
    )
    parser.add_argument(
        "--exp-show", type=Path, default=None,
        help="a saved `dvc exp show --json` (its folder may hold every run's details, see "
        "--save-results); default: run `dvc exp show` here",
    )  # fmt: skip
    parser.add_argument(
        "--rev", action="append", default=[],
        help="also report this commit's experiments (passed to dvc exp show --rev; repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--loss", action="append", default=None, metavar="[LABEL=]PATH",
        help=f"a dvclive loss.tsv to plot, optionally labelled (repeatable; default: "
        f"reference={DEFAULT_LOSS} when it exists, and every <run>/loss.tsv beside --verdict)",
    )  # fmt: skip
    parser.add_argument(
        "--breakdowns", action="append", type=Path, default=None, metavar="PATH",
        help="a dvclive breakdowns.json of the reference run (repeatable; default: "
        + " and ".join(map(str, DEFAULT_BREAKDOWNS)) + ")",
    )  # fmt: skip
    parser.add_argument(
        "--predictions", type=Path, default=None,
        help="data/predictions/eval_position.jsonl of the reference run, for the choice "
        "histograms (default: none; the figure is then reported absent)",
    )  # fmt: skip
    parser.add_argument(
        "--verdict", type=Path, default=Path("docs/results/controls/verdict.json"),
        help="the control arms' verdict (python -m letterwise.eval.verdict); the first "
        "section says it is absent when the file is (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--qwen3-data", type=Path, default=Path("docs/results/qwen3-data"),
        help="folder of the qwen3-4b data stages' results (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--timing", type=Path, default=Path("docs/results/reference-timing.json"),
        help="the reference run's measured machine and wall time (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--replay", type=Path, default=Path("docs/results/replay"),
        help="saved runs of the replay experiment, one folder each (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--axes", type=Path, default=Path("docs/results/axes"),
        help="saved runs along the model, recipe and training-steps axes, one folder each with "
        "its params.yaml and details (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--dose", type=Path, default=Path("docs/results/dose"),
        help="the verdict's arms at other training-step counts, one steps<N>/ folder each with "
        "its verdict.json (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--study", type=Path, default=Path("docs/results/study"),
        help="the powered study: its plan.yaml and one <model>/verdict.json per family "
        "(default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--follow-ups", type=Path, nargs="*",
        default=[Path("docs/results/study2"), Path("docs/results/study3")],
        help="the follow-up studies (fresh test words, habit-free questions), in the order they "
        "ran: each folder's plan.yaml and <model>/verdict.json; one without a plan is skipped "
        "(default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--recipe-search", type=Path, default=Path("docs/results/count_recipe"),
        help="a validation search for a recipe that makes the count positive control visible: "
        "<model>/validation/steps<N>/verdict.json (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--probe", type=Path, default=Path("metrics/details/probe.json"),
        help="the probe stage's details: per-layer selectivity and logit lens, base and tuned "
        "(default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=Path("docs/report.md"), help="default: %(default)s"
    )
    parser.add_argument(
        "--save-results", type=Path, default=None, metavar="DIR",
        help="also save what the report reads (DIR/exp_show.json and every run's "
        "metrics/details/ files under DIR/<rev>/), so it can be rendered again without the "
        "experiment refs: --exp-show DIR/exp_show.json",
    )  # fmt: skip
    parser.add_argument(
        "--compare", action="store_true",
        help="print a one-screen comparison of the runs (changed params, tuned accuracy and "
        "delta [95%% CI] per task and instrument) instead of writing the report",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.exp_show:
        if not args.exp_show.is_file():
            raise SystemExit(f"--exp-show {args.exp_show}: no such file")
        shown = json.loads(args.exp_show.read_text())
    else:
        command = ["dvc", "exp", "show", "--json", *[a for r in args.rev for a in ("--rev", r)]]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"`{' '.join(command)}` failed:\n{done.stderr}")
        shown = json.loads(done.stdout)
    # a saved snapshot keeps each run's details beside its exp_show.json (see --save-results)
    saved = args.exp_show.parent if args.exp_show else None
    runs = runs_from_exp_show(shown, saved)
    if args.save_results:
        save_results(args.save_results, shown)
    if not runs:
        raise SystemExit("no evaluated experiments in `dvc exp show` (run `dvc repro` first)")
    if args.compare:
        Console().print(compare_table(runs))
        return 0
    loss = args.loss
    if loss is None:
        loss = [f"reference={DEFAULT_LOSS}"] if DEFAULT_LOSS.is_file() else []
        # the control arms' curves, where their saved results carry one (<arm>-seed<k>/loss.tsv)
        controls = args.verdict.parent
        loss += [f"{p.parent.name}={p}" for p in sorted(controls.glob("*/loss.tsv"))]
    inputs = load_inputs(
        loss=loss,
        breakdowns=args.breakdowns if args.breakdowns is not None else list(DEFAULT_BREAKDOWNS),
        predictions=args.predictions,
        verdict=args.verdict,
        qwen3_data=args.qwen3_data,
        timing=args.timing,
        replay=args.replay,
        axes=args.axes,
        dose=args.dose,
        study=args.study,
        probe=args.probe,
        follow_ups=args.follow_ups,
        recipe_search=args.recipe_search,
    )
    figures_dir = args.out.parent / f"{args.out.stem}_figures"
    text = render(runs, figures_dir, inputs)
    plan = figure_plan(runs, pick_reference(runs), inputs)
    for name, spec in plan.items():
        save_png(spec, figures_dir / name)
    # figures from an earlier render that this one no longer makes would be stale: remove them
    for stale in figures_dir.glob("*.png"):
        if stale.name not in plan:
            stale.unlink()
    write_text(args.out, text)
    write_text(args.out.with_suffix(".html"), html_page(text))
    Console().print(f"wrote {args.out} ({len(runs)} runs) and {len(plan)} figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
