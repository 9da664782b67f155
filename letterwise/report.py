"""The final report, rendered from `dvc exp show --json` and the training curve it points at.

    python -m letterwise.report                               # HEAD, its experiments, workspace
    python -m letterwise.report --rev b15bfe7 --out docs/report.md
    python -m letterwise.report --exp-show exp.json           # a saved `dvc exp show --json`

Every number in the report is read from the experiments' params and metrics as DVC reports
them, with the full results behind each headline metrics file (metrics/details/, at the same
revision); nothing is typed by hand. Sections whose experiments were not run (thinking mode, a
temperature sweep, several samples per question) say so and name the command that runs them.
Figures are PNG files rendered offline with vl-convert (Vega-Lite), so the report reads
without internet, on the Hub too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from letterwise.io import details_path, write_text

TASKS = ("spelling", "position", "count")
INSTRUMENTS = {
    "direct": "direct generation",
    "spell_first": "spell-first generation",
    "choice": "choice scoring",
    "teacher_forced": "teacher-forced letters",
}
EVAL_FILES = ("metrics/eval_spelling.json", "metrics/eval_position.json")


@dataclass
class Run:
    name: str
    rev: str
    params: dict[str, Any]
    metrics: dict[str, dict[str, Any]]  # metrics file -> its content
    changed: dict[str, Any] = field(default_factory=dict)  # params that differ from the reference

    def tasks(self) -> dict[str, dict[str, Any]]:
        found = {}
        for name in EVAL_FILES:
            data = self.metrics.get(name, {})
            found |= {task: data[task] for task in TASKS if isinstance(data.get(task), dict)}
        return found

    def eval_setting(self, key: str) -> Any:
        return self.params.get("eval", {}).get(key)


# --------------------------------------------------------------------------- reading


def _data(entry: dict[str, Any] | None) -> dict[str, Any]:
    return (entry or {}).get("data") or {}


def details_at(
    rev: str, metrics_file: str, saved: Path | None = None
) -> dict[str, Any] | None:
    """The full results behind a headline metrics file (metrics/details/<name>) at `rev`: from
    a saved snapshot (`saved`/<rev>/, see save_results), the workspace file, or the committed
    one of a commit or experiment; None where the revision predates the split (its metrics
    file then holds every number itself) or is not in git."""
    path = details_path(metrics_file).as_posix()
    if saved is not None and (saved / rev / Path(path).name).is_file():
        return json.loads((saved / rev / Path(path).name).read_text())
    if rev == "workspace":
        return json.loads(Path(path).read_text()) if Path(path).is_file() else None
    shown = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    return json.loads(shown.stdout) if shown.returncode == 0 else None


def _run_of(name: str, rev_entry: dict[str, Any], saved: Path | None = None) -> Run | None:
    data = rev_entry.get("data") or {}
    rev = str(rev_entry.get("rev"))
    metrics = {path: _data(v) for path, v in (data.get("metrics") or {}).items()}
    metrics = {
        path: details_at(rev, path, saved) or headline for path, headline in metrics.items()
    }
    if not any(metrics.get(f) for f in EVAL_FILES):
        return None  # no evaluation in this revision: nothing to report
    params = _data((data.get("params") or {}).get("params.yaml"))
    return Run(name=name, rev=rev, params=params, metrics=metrics)


def runs_from_exp_show(shown: list[dict[str, Any]], saved: Path | None = None) -> list[Run]:
    """Workspace, baseline commits and their experiments, in DVC's order; duplicates (the
    workspace equal to HEAD) are kept once, under the more specific name."""
    runs: list[Run] = []
    for baseline in shown:
        rev = str(baseline.get("rev"))
        name = "workspace" if rev == "workspace" else f"commit {rev[:7]}"
        if (run := _run_of(name, baseline, saved)) is not None:
            runs.append(run)
        for experiment in baseline.get("experiments") or []:
            for rev_entry in experiment.get("revs") or []:
                exp_name = experiment.get("name") or rev_entry.get("name") or rev_entry["rev"][:7]
                if (run := _run_of(exp_name, rev_entry, saved)) is not None:
                    runs.append(run)
    # Same params and same eval results = the same run (wall times aside): keep one, preferring
    # a commit or an experiment name over "workspace".
    # Experiments of the grid that repeat a run (decoding-greedy is the reference) keep their
    # names as aliases, so every queued name is still found.
    unique: dict[str, Run] = {}
    for run in runs:
        key = json.dumps([run.params, run.tasks()], sort_keys=True, default=str)
        if key not in unique or unique[key].name == "workspace":
            unique[key] = run
        elif run.name != "workspace":
            unique[key].name += f" = {run.name}"
    return list(unique.values())


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def pick_reference(runs: list[Run]) -> Run:
    """The run the summary is about: the committed baseline (or the workspace)."""
    for run in runs:
        if run.name.startswith("commit "):
            return run
    return runs[0]


def mark_changes(runs: list[Run], reference: Run) -> None:
    base = flatten(reference.params)
    for run in runs:
        mine = flatten(run.params)
        run.changed = {k: v for k, v in mine.items() if base.get(k) != v}


# --------------------------------------------------------------------------- formatting


def num(value: float | None, digits: int = 3, sign: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def p_text(value: float | None) -> str:
    if value is None:
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def ci(section: dict[str, Any], sign: bool = False) -> str:
    value = section.get("delta" if sign else "accuracy")
    low, high = section.get("ci_low"), section.get("ci_high")
    return f"{num(value, sign=sign)} [{num(low, sign=sign)}, {num(high, sign=sign)}]"


def instrument_sections(task_metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {"direct": task_metrics}
    found |= {k: task_metrics[k] for k in INSTRUMENTS if k != "direct" and k in task_metrics}
    return found


def reproduce_command(run: Run, reference: Run) -> str:
    where = reference.name.split(" = ")[0]  # the commit, not the experiments that repeat it
    if not run.changed:
        return f"`dvc repro` at {where}"
    sets = " ".join(f"-S '{k}={json.dumps(v) if not isinstance(v, str) else v}'"
                    for k, v in sorted(run.changed.items()))  # fmt: skip
    return f"`dvc exp run {sets}` from {where}"


def coupling_table(run: Run) -> list[str]:
    """Per transfer task and model: does spelling a word right go with answering its question
    right? (eval_position's per-word coupling with eval_spelling)"""
    lines = [
        "| task | model | n | P(right given spelled right) | P(right given spelled wrong) "
        "| odds ratio [95% CI] | Fisher p |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    found = False
    for task, metrics in run.tasks().items():
        for model, c in (metrics.get("coupling") or {}).items():
            found = True
            ratio = (
                f"{num(c.get('odds_ratio'), 2)} [{num(c.get('odds_ratio_ci_low'), 2)}, "
                f"{num(c.get('odds_ratio_ci_high'), 2)}]"
            )
            lines.append(
                f"| {task} | {model} | {c.get('n')} | {num(c.get('p_right_given_spelled_right'))} "
                f"| {num(c.get('p_right_given_spelled_wrong'))} | {ratio} "
                f"| {p_text(c.get('fisher_p'))} |"
            )
    if not found:
        return ["Absent: the reference run has no coupling results (eval_position computes them "
                "from eval_spelling's predictions)."]  # fmt: skip
    return [*lines, "", "A dash is undefined: no word of that kind (e.g. the base model spelled "
            "no test word right)."]  # fmt: skip


# --------------------------------------------------------------------------- figures


def instrument_rows(run: Run) -> list[dict[str, Any]]:
    rows = []
    for task, metrics in run.tasks().items():
        for key, section in instrument_sections(metrics).items():
            for model in ("base", "tuned"):
                s = section[model]
                rows.append({
                    "task": task, "instrument": INSTRUMENTS[key], "model": model,
                    "accuracy": s["accuracy"], "low": s.get("ci_low"), "high": s.get("ci_high"),
                })  # fmt: skip
    return rows


def instruments_chart(run: Run) -> dict[str, Any]:
    """Base vs fine-tuned accuracy per task and instrument, with 95% CI bars."""
    encoding_y = {"field": "instrument", "type": "nominal", "title": None}
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "data": {"values": instrument_rows(run)},
        "facet": {"row": {"field": "task", "type": "nominal", "title": None}},
        "spec": {
            "width": 420,
            "layer": [
                {
                    "mark": "bar",
                    "encoding": {
                        "y": encoding_y,
                        "yOffset": {"field": "model"},
                        "x": {
                            "field": "accuracy",
                            "type": "quantitative",
                            "title": "accuracy (lines: 95% CI)",
                            "scale": {"domain": [0, 1]},
                        },
                        "color": {"field": "model", "type": "nominal"},
                    },
                },  # fmt: skip
                {
                    "mark": {"type": "rule", "color": "black"},
                    "encoding": {
                        "y": encoding_y,
                        "yOffset": {"field": "model"},
                        "x": {"field": "low", "type": "quantitative", "title": None},
                        "x2": {"field": "high"},
                    },
                },
            ],
        },
        "resolve": {"scale": {"y": "independent"}},
    }


def deltas_chart(runs: list[Run]) -> dict[str, Any]:
    """Fine-tuned minus base, with its 95% CI, per experiment, task and instrument."""
    rows = []
    for run in runs:
        for task, metrics in run.tasks().items():
            for key, section in instrument_sections(metrics).items():
                d = section["delta"]
                rows.append({
                    "run": run.name, "series": f"{task}: {INSTRUMENTS[key]}",
                    "delta": d["delta"], "low": d.get("ci_low"), "high": d.get("ci_high"),
                })  # fmt: skip
    y = {"field": "series", "type": "nominal", "title": None}
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "data": {"values": rows},
        "facet": {"column": {"field": "run", "type": "nominal", "title": None}},
        "spec": {
            "width": 220,
            "layer": [
                {"mark": "rule", "encoding": {"x": {"datum": 0}}},
                {
                    "mark": {"type": "rule"},
                    "encoding": {
                        "y": y,
                        "x": {"field": "low", "type": "quantitative", "title": "delta"},
                        "x2": {"field": "high"},
                    },
                },
                {
                    "mark": {"type": "point", "filled": True},
                    "encoding": {"y": y, "x": {"field": "delta", "type": "quantitative"}},
                },
            ],  # fmt: skip
        },
    }


def curve_chart(points: list[dict[str, Any]], x: str, title: str) -> dict[str, Any]:
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": title,
        "width": 420,
        "height": 220,
        "data": {"values": points},
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": {"field": x, "type": "quantitative"},
            "y": {"field": "accuracy", "type": "quantitative", "scale": {"domain": [0, 1]}},
            "color": {"field": "series", "type": "nominal"},
        },
    }


def loss_points(loss_tsv: Path) -> list[dict[str, float]]:
    lines = loss_tsv.read_text().splitlines()
    header = lines[0].split("\t")
    return [
        {"step": float(parts[header.index("step")]), "loss": float(parts[header.index("loss")])}
        for parts in (line.split("\t") for line in lines[1:])
    ]


def loss_chart(points: list[dict[str, float]]) -> dict[str, Any]:
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": "training loss (answer tokens only)",
        "width": 420,
        "height": 200,
        "data": {"values": points},
        "mark": "line",
        "encoding": {
            "x": {"field": "step", "type": "quantitative"},
            "y": {"field": "loss", "type": "quantitative"},
        },
    }


def save_png(spec: dict[str, Any], path: Path) -> str:
    import vl_convert

    png = vl_convert.vegalite_to_png(spec, scale=1.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(png)
    tmp.replace(path)
    return path.name


# --------------------------------------------------------------------------- the report


def results_table(run: Run) -> list[str]:
    lines = [
        "| task | instrument | n | base [95% CI] | fine-tuned [95% CI] | delta [95% CI] | p "
        "| in format base / tuned |",
        "|---|---|---:|---|---|---|---:|---|",
    ]
    for task, metrics in run.tasks().items():
        for key, section in instrument_sections(metrics).items():
            base, tuned, delta = section["base"], section["tuned"], section["delta"]
            in_format = "–"
            if "in_format_rate" in base:
                in_format = f"{num(base['in_format_rate'], 2)} / {num(tuned['in_format_rate'], 2)}"
            lines.append(
                f"| {task} | {INSTRUMENTS[key]} | {delta.get('n')} | {ci(base)} | {ci(tuned)} "
                f"| {ci(delta, sign=True)} | {p_text(delta.get('p_value'))} | {in_format} |"
            )
    return lines


def chance_table(run: Run) -> list[str]:
    lines = [
        "| task | base (choice) | fine-tuned (choice) | uniform chance | majority answer "
        "| positional prior |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for task, metrics in run.tasks().items():
        choice = metrics.get("choice")
        if not choice:
            continue
        prior = choice["base"].get("baselines", {})
        lines.append(
            f"| {task} | {num(choice['base']['accuracy'])} | {num(choice['tuned']['accuracy'])} "
            f"| {num(prior.get('uniform_chance'))} | {num(prior.get('majority_answer'))} "
            f"| {num(prior.get('positional_prior'))} |"
        )
    return lines


def experiments_table(runs: list[Run], reference: Run) -> list[str]:
    lines = [
        "| experiment | changes | spelling delta | position delta (direct / choice) "
        "| count delta (direct / choice) | reproduce |",
        "|---|---|---|---|---|---|",
    ]

    def delta(tasks: dict[str, Any], task: str, key: str | None = None) -> str:
        section = tasks.get(task)
        if section and key:
            section = section.get(key)
        return ci(section["delta"], sign=True) if section else "–"

    for run in runs:
        t = run.tasks()
        changes = ", ".join(
            f"{k}={json.dumps(v) if not isinstance(v, str) else v}"
            for k, v in sorted(run.changed.items())
        )
        lines.append(
            f"| {run.name} | {changes or 'reference'} | {delta(t, 'spelling')} "
            f"| {delta(t, 'position')} / {delta(t, 'position', 'choice')} "
            f"| {delta(t, 'count')} / {delta(t, 'count', 'choice')} "
            f"| {reproduce_command(run, reference)} |"
        )
    return lines


SHORT_INSTRUMENTS = {
    "direct": "direct",
    "spell_first": "spell-first",
    "choice": "choice",
    "teacher_forced": "forced",
}


def compare_table(runs: list[Run]) -> Table:
    """One row per run, for a terminal: the params it changed against the reference, then per
    task and instrument the fine-tuned accuracy and the paired delta with its 95% CI (the
    numbers a run is compared by; `dvc exp show` lists every headline column)."""
    reference = pick_reference(runs)
    mark_changes(runs, reference)
    columns: list[tuple[str, str]] = []
    for run in runs:
        for task, metrics in run.tasks().items():
            for key in instrument_sections(metrics):
                if (task, key) not in columns:
                    columns.append((task, key))
    columns.sort(key=lambda c: (TASKS.index(c[0]), list(INSTRUMENTS).index(c[1])))
    table = Table(
        title=f"tuned accuracy, delta vs base [95% CI]; changes vs {reference.name}",
        show_lines=True,
    )
    table.add_column("experiment", no_wrap=True)
    table.add_column("changes", overflow="fold", max_width=34)
    for task, key in columns:
        table.add_column(f"{task}\n{SHORT_INSTRUMENTS[key]}", justify="right", no_wrap=True)
    for run in runs:
        changes = "\n".join(
            f"{k}={json.dumps(v) if not isinstance(v, str) else v}"
            for k, v in sorted(run.changed.items())
        )
        cells = []
        for task, key in columns:
            section = instrument_sections(run.tasks().get(task, {})).get(key)
            if not section or task not in run.tasks():
                cells.append("–")
                continue
            d = section["delta"]
            cells.append(
                f"{num(section['tuned']['accuracy'])} ({num(d['delta'], sign=True)})\n"
                f"[{num(d.get('ci_low'), 2, True)}, {num(d.get('ci_high'), 2, True)}]"
            )
        table.add_row(run.name.replace(" = ", "\n= "), changes or "(reference)", *cells)
    return table


def sweep(runs: list[Run], key: str) -> list[dict[str, Any]]:
    """(value of eval.<key>, task, tuned accuracy) across runs that differ only by sampling."""
    points = []
    for run in runs:
        value = run.eval_setting(key)
        if value is None or run.eval_setting("decoding") != "sampled":
            continue
        for task, metrics in run.tasks().items():
            points.append({key: value, "series": task, "accuracy": metrics["tuned"]["accuracy"]})
    return points


def executive_summary(reference: Run) -> list[str]:
    t = reference.tasks()
    lines = []
    spelling = t.get("spelling")
    if spelling:
        lines.append(
            f"- **Spelling (trained):** {num(spelling['base']['accuracy'])} → "
            f"{num(spelling['tuned']['accuracy'])} exact, delta {ci(spelling['delta'], True)}, "
            f"p {p_text(spelling['delta'].get('p_value'))}."
        )
    for task in ("position", "count"):
        metrics = t.get(task)
        if not metrics:
            continue
        parts = [
            f"{INSTRUMENTS[key]} {ci(section['delta'], True)}"
            for key, section in instrument_sections(metrics).items()
        ]
        lines.append(f"- **{task.capitalize()} (never trained), delta by instrument:** "
                     + "; ".join(parts) + ".")  # fmt: skip
    transfer = [
        (task, key)
        for task in ("position", "count")
        for key, section in instrument_sections(t.get(task, {})).items()
        if t.get(task) and (section["delta"].get("ci_low") or 0) > 0
    ]
    verdict = (
        "Some instruments show a positive transfer delta whose CI excludes 0: "
        + ", ".join(f"{task} ({INSTRUMENTS[key]})" for task, key in transfer)
        + ". Check it against the chance baselines below before calling it letter knowledge."
        if transfer
        else "No instrument shows a positive transfer delta whose CI excludes 0: on this run, "
        "spelling-only fine-tuning did not improve letter position or count answers."
    )
    return [*lines, "", verdict]


def render(runs: list[Run], figures_dir: Path, loss_tsv: Path | None) -> str:
    if not runs:
        raise SystemExit("no evaluated experiments in `dvc exp show` (run `dvc repro` first)")
    reference = pick_reference(runs)
    mark_changes(runs, reference)
    p = reference.params
    tokens = reference.metrics.get("metrics/filter_tokens.json", {})
    data = reference.metrics.get("metrics/build_dataset.json", {})
    train = reference.metrics.get("metrics/train.json", {})
    rel = figures_dir.name
    out = [
        "# letterwise: does spelling-only fine-tuning transfer to letter position and count?",
        "",
        f"Generated by `python -m letterwise.report` from `dvc exp show --json`: {len(runs)} "
        f"evaluated run(s); the reference is **{reference.name}** (`{reference.rev[:12]}`). "
        "Every number below is read from those runs' metrics.",
        "",
        "## Executive summary",
        "",
        f"Model `{p.get('model')}`, {p.get('eval', {}).get('split')} split, "
        f"{p.get('eval', {}).get('mode')} mode, {p.get('eval', {}).get('decoding')} decoding.",
        "",
        *executive_summary(reference),
        "",
        "## Method",
        "",
        f"- Token subset: {tokens.get('kept_strings', tokens.get('kept_tokens', '–'))} English "
        f"letter strings kept from a vocabulary of {tokens.get('vocab_size', '–')} tokens.",
        f"- Training data: {data.get('training_strings', '–')} strings, "
        f"{train.get('examples', '–')} spelling examples; replay share "
        f"{p.get('build_dataset', {}).get('replay_share')}.",
        f"- Training: LoRA r={p.get('train', {}).get('lora', {}).get('r')}, "
        f"{train.get('steps', '–')} steps, final loss {num(train.get('final_loss'), 4)}, "
        f"{num(train.get('train_seconds'), 0)} s.",
        "- Evaluation: held-out English words never seen as training strings; base and "
        "fine-tuned on the same questions; instruments: direct generation (strict), choice "
        "scoring (log-likelihood of each candidate, format-free), spell-first prompting where "
        "run, teacher-forced letters for spelling; 95% CIs (Wilson; paired bootstrap for "
        "deltas) and exact McNemar p.",
        "",
        "## Results (reference run)",
        "",
        *results_table(reference),
        "",
    ]
    if reference.tasks():
        out += [f"![base vs fine-tuned per instrument]({rel}/instruments.png)", ""]
    if loss_tsv is not None:
        out += [f"![training loss]({rel}/training_loss.png)", ""]
    out += ["## Comparison to the untuned baseline and to chance", "", *chance_table(reference),
            ""]  # fmt: skip
    out += ["## Transfer coupling (reference run)", "", *coupling_table(reference), ""]
    out += ["## Experiments", "", *experiments_table(runs, reference), ""]
    if len(runs) > 1:
        out += [f"![transfer deltas per experiment]({rel}/deltas.png)", ""]
    modes = {run.eval_setting("mode") for run in runs}
    out += ["## Mode comparison (Qwen3: thinking vs non-thinking)", ""]
    if {"thinking", "non-thinking"} <= modes:
        rows = [r for r in runs if r.eval_setting("mode") in ("thinking", "non-thinking")]
        out += experiments_table(rows, reference) + [""]
    else:
        out += [
            "Absent: no thinking-mode run among these experiments. On a Qwen3 preset run "
            "`python -m letterwise.experiments mode`; SmolLM2 has no thinking mode.",
            "",
        ]
    for key, title, command in (
        ("temperature", "Temperature sweep", "python -m letterwise.experiments temperature"),
        ("n_samples", "Samples per question", "python -m letterwise.experiments n_samples"),
    ):
        points = sweep(runs, key)
        out += [f"## {title}", ""]
        if len({pt[key] for pt in points}) > 1:
            out += [f"![{title}]({rel}/{key}.png)", ""]
        else:
            out += [f"Absent: fewer than two sampled runs differ in `eval.{key}`; run "
                    f"`{command}`.", ""]  # fmt: skip
    out += [
        "## Limitations",
        "",
        "- Small evaluation sets: read the intervals, not the point estimates.",
        "- Direct generation mixes knowledge with answer format; the in-format rates and the "
        "choice-scoring rows separate the two. Choice scoring is only as good as its "
        "baselines: compare it to chance and the positional prior above.",
        "- Wall times depend on the machine and its load.",
        "",
        "## Qwen3-4B specifics",
        "",
        (
            "This report covers a Qwen3 run."
            if str(p.get("model", "")).startswith("qwen3")
            else "Absent: the reference is not a Qwen3 run. Pull a Studio's experiments with "
            "`dvc exp pull origin <exp>` and render this report again."
        ),
        "",
    ]
    return "\n".join(out)


def write_figures(runs: list[Run], figures_dir: Path, loss_tsv: Path | None) -> list[str]:
    reference = pick_reference(runs)
    written = [save_png(instruments_chart(reference), figures_dir / "instruments.png")]
    if len(runs) > 1:
        written.append(save_png(deltas_chart(runs), figures_dir / "deltas.png"))
    if loss_tsv is not None:
        written.append(
            save_png(loss_chart(loss_points(loss_tsv)), figures_dir / "training_loss.png")
        )
    for key in ("temperature", "n_samples"):
        points = sweep(runs, key)
        if len({pt[key] for pt in points}) > 1:
            chart = curve_chart(points, key, f"fine-tuned accuracy by {key}")
            written.append(save_png(chart, figures_dir / f"{key}.png"))
    return written


def html_page(markdown_text: str) -> str:
    """The same report as a standalone HTML page (figures by relative path; no scripts, no CDN)."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown_text)
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.45}"
        "table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ccc;"
        "padding:2px 6px}img{max-width:100%}code{font-size:.9em}"
    )
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>letterwise report</title>'
        f"<style>{style}</style></head><body>{body}</body></html>\n"
    )


def save_results(folder: Path, shown: list[dict[str, Any]]) -> None:
    """The report's inputs as files: `dvc exp show --json` and every revision's full results
    (metrics/details/), so the report renders again without the experiment refs."""
    entries = [
        entry
        for baseline in shown
        for entry in [baseline]
        + [r for e in baseline.get("experiments") or [] for r in e.get("revs") or []]
    ]
    for entry in entries:
        rev = str(entry.get("rev"))
        for metrics_file in ((entry.get("data") or {}).get("metrics") or {}):
            details = details_at(rev, metrics_file)
            if details is not None:
                text = json.dumps(details, indent=2, sort_keys=True) + "\n"
                write_text(folder / rev / Path(metrics_file).name, text)
    write_text(folder / "exp_show.json", json.dumps(shown, indent=2) + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m letterwise.report", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--exp-show", type=Path, default=None,
        help="a saved `dvc exp show --json`; default: run it here",
    )  # fmt: skip
    parser.add_argument(
        "--rev", action="append", default=[],
        help="also report this commit's experiments (passed to dvc exp show --rev; repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--loss", type=Path, default=Path("dvclive/train/plots/metrics/loss.tsv"),
        help="training loss curve of the workspace run (default: %(default)s)",
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
    if args.compare:
        if not runs:
            raise SystemExit("no evaluated experiments in `dvc exp show` (run `dvc repro` first)")
        Console().print(compare_table(runs))
        return 0
    loss = args.loss if args.loss.is_file() else None
    figures_dir = args.out.parent / f"{args.out.stem}_figures"
    text = render(runs, figures_dir, loss)
    figures = write_figures(runs, figures_dir, loss)
    write_text(args.out, text + "\n")
    write_text(args.out.with_suffix(".html"), html_page(text))
    Console().print(f"wrote {args.out} ({len(runs)} runs) and {len(figures)} figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
