"""letterwise.eval.power: n from a measured standard error, worked out by hand."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from letterwise.eval.power import needed_n, power_rows
from letterwise.eval.verdict import Plan


def test_needed_n_by_hand():
    # se 0.02 at n = 200; to detect 0.03 at z 2.8016: 200 x (2.8016 x 0.02 / 0.03)^2 = 697.6
    assert needed_n(200, 0.02, 0.03, 2.8016) == 698
    assert needed_n(200, 0.02, 0.0, 2.8) is None and needed_n(200, 0.0, 0.03, 2.8) is None


def test_power_rows_use_the_plans_z_values():
    plan = Plan(primary_instrument="cloze", primary_outcome="accuracy", alpha=0.05, power=0.8)
    verdict = {"rows": [{
        "task": "position", "instrument": "cloze", "primary": True, "seeds": {},
        "treatment_minus_negative": {"n_questions": 100, "se": 0.05}, "margin": 0.05,
    }]}  # fmt: skip
    (row,) = power_rows(verdict, plan, (0.1,))
    # z_{0.975} + z_{0.8} = 1.95996 + 0.84162 = 2.80158
    assert row["mde"] == pytest.approx(2.80158 * 0.05, rel=1e-4)
    assert row["n_for_effect"]["0.1"] == 197  # 100 x (2.80158 x 0.05 / 0.1)^2 = 196.2
    assert row["n_for_margin"] == 785  # 100 x 2.80158^2 = 784.9
    # TOST: z_{0.95} + z_{0.9} = 1.64485 + 1.28155 = 2.92640 -> 100 x 2.9264^2 = 856.4
    assert row["n_for_equivalence"] == 857


def test_cli_on_the_committed_pilot_writes_json(tmp_path):
    out = tmp_path / "power.json"
    done = subprocess.run(
        [sys.executable, "-m", "letterwise.eval.power", "docs/results/controls",
         "--outcome", "accuracy", "--resamples", "300", "--out", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads(out.read_text())["rows"]
    assert {(r["task"], r["instrument"]) for r in rows} >= {("position", "cloze_calibrated")}
