"""Power calculator: how many questions per task the verdict needs, from per-question records.

    python -m letterwise.eval.power docs/results/controls --outcome accuracy
    python -m letterwise.eval.power RESULTS_DIR --effects 0.02 0.03 0.05 --out power.json

For each task and instrument of a results folder (<arm>-seed<k>/eval_position.json, as the
verdict reads), the bootstrap standard error of spelling - negative_control at the folder's n
(`se`, the same two-level bootstrap the verdict uses) gives, assuming the standard error
shrinks as 1/sqrt(n) at the same seeds (optimistic where seeds disagree: seed variance does
not shrink with n):
- `mde`: the minimum detectable effect at this n, (z_{1-alpha/2} + z_power) x se;
- `n_for_effect[d]`: the n at which an effect d is detected with the plan's power,
  n x ((z_{1-alpha/2} + z_power) x se / d)^2;
- with a margin (the instrument sees a positive control that no detector explains):
  `n_for_margin` (detect an effect of the margin's size) and `n_for_equivalence` (two one-sided
  tests at alpha reach +-margin with the plan's power when the true difference is 0:
  n x ((z_{1-alpha} + z_{(1+power)/2}) x se / margin)^2).
Torch-free.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from scipy.stats import norm

from letterwise.eval.verdict import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    OUTCOMES,
    Plan,
    plan_from_params,
    verdict_from_dir,
)
from letterwise.io import write_json

DEFAULT_EFFECTS = (0.02, 0.03, 0.05, 0.1)


def needed_n(n: int, se: float, effect: float, z: float) -> int | None:
    """Questions to bring z x se down to `effect` (se measured at n, shrinking as 1/sqrt(n))."""
    if effect <= 0 or se <= 0:
        return None
    return math.ceil(n * (z * se / effect) ** 2)


def power_rows(verdict: dict[str, Any], plan: Plan, effects: tuple[float, ...]) -> list[dict]:
    """One row per task and instrument with spelling - negative measured."""
    detect = plan.z_two_sided + plan.z_power
    equivalence = float(norm.ppf(1 - plan.alpha) + norm.ppf((1 + plan.power) / 2))
    rows = []
    for row in verdict["rows"]:
        difference = row["treatment_minus_negative"]
        if difference is None:
            continue
        n, se, margin = difference["n_questions"], difference["se"], row["margin"]
        rows.append({
            "task": row["task"], "instrument": row["instrument"], "primary": row["primary"],
            "n": n, "seeds": row["seeds"], "se": se, "mde": detect * se, "margin": margin,
            "n_for_effect": {f"{d:g}": needed_n(n, se, d, detect) for d in effects},
            "n_for_margin": None if margin is None else needed_n(n, se, margin, detect),
            "n_for_equivalence": None if margin is None else needed_n(n, se, margin, equivalence),
        })  # fmt: skip
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m letterwise.eval.power", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("results_dir", type=Path, metavar="RESULTS_DIR",
                        help="folder of <arm>-seed<k>/eval_position.json runs")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the JSON (default: RESULTS_DIR/power.json)")  # fmt: skip
    parser.add_argument("--params", type=Path, default=Path("params.yaml"),
                        help="params file whose `verdict` section is the plan (default: %(default)s)")  # fmt: skip
    parser.add_argument("--outcome", choices=OUTCOMES, default=None,
                        help="override the plan's outcome (accuracy for runs with only 0/1 bits)")  # fmt: skip
    parser.add_argument("--effects", type=float, nargs="+", default=list(DEFAULT_EFFECTS),
                        help="effects to size n for (default: %(default)s)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="bootstrap random seed (default: %(default)s)")  # fmt: skip
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES,
                        help="bootstrap resamples (default: %(default)s)")  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        plan = plan_from_params(args.params, primary_outcome=args.outcome)
        verdict = verdict_from_dir(args.results_dir, plan=plan, seed=args.seed,
                                   resamples=args.resamples)  # fmt: skip
    except ValueError as error:
        raise SystemExit(f"power: {error}") from error
    rows = power_rows(verdict, plan, tuple(args.effects))
    out = args.out or args.results_dir / "power.json"
    write_json(out, {"results_dir": str(args.results_dir), "plan": plan.as_dict(),
                     "assumption": "se shrinks as 1/sqrt(n) at the same seeds", "rows": rows})  # fmt: skip
    for row in rows:
        effects = ", ".join(f"{d}: {n}" for d, n in row["n_for_effect"].items())
        print(f"{row['task']:8} {row['instrument']:16} n={row['n']} se={row['se']:.4f} "
              f"mde={row['mde']:.3f} margin={row['margin'] if row['margin'] is None else round(row['margin'], 3)} "
              f"n_for_margin={row['n_for_margin']} n_for_equivalence={row['n_for_equivalence']} "
              f"| n for effect {effects}")  # fmt: skip
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
