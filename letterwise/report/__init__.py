"""The final report, rendered from `dvc exp show --json` and the result files beside it.

    python -m letterwise.report                               # HEAD, its experiments, workspace
    python -m letterwise.report --rev b15bfe7 --out docs/report.md
    python -m letterwise.report --exp-show docs/results/grid/exp_show.json   # saved results

Every number in the report is read from the experiments' params and metrics as DVC reports
them, with the full results behind each headline metrics file (metrics/details/, at the same
revision), and from the files named by the command's flags (training curves, breakdowns, the
verdict of the control arms, the Qwen3 data results); nothing is typed by hand. Sections whose
results are absent say so and name the command that makes them. Figures are PNG files rendered
offline with vl-convert (Vega-Lite), so the report reads without internet, on the Hub too.

Modules: loading (runs and side files), tables, figures (Vega-Lite specs), sections (the
text), citations, __main__ (the command line).
"""

from letterwise.report.loading import (
    Inputs,
    Run,
    details_at,
    load_inputs,
    run_of,
    runs_from_exp_show,
    save_results,
)
from letterwise.report.sections import render

__all__ = [
    "Inputs",
    "Run",
    "details_at",
    "load_inputs",
    "render",
    "run_of",
    "runs_from_exp_show",
    "save_results",
]
