"""How numbers are written in the report, the model card and scripts/results_table.py: one
place, so a value reads the same wherever it appears. Plain Python (no torch), importable by
the publish stage."""

from __future__ import annotations

from typing import Any

MISSING = "–"


def num(value: float | None, digits: int = 3, sign: bool = False) -> str:
    """A fixed-point number ("0.135", "+0.120"); a dash for a missing or undefined value."""
    if value is None:
        return MISSING
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def percent(value: float | None, digits: int = 0) -> str:
    """A share as a percentage ("16 %")."""
    return MISSING if value is None else f"{100 * value:.{digits}f} %"


def p_value(value: float | None) -> str:
    """A p-value as people read it: "< 0.001" rather than a rounded 0.000."""
    if value is None:
        return MISSING
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def p_with_sign(value: float | None) -> str:
    """ "p < 0.001" / "p = 0.042": the p-value with its relation, for running text."""
    shown = p_value(value)
    return shown if shown.startswith("<") else f"= {shown}"


def p_scientific(value: float | None) -> str:
    """A p-value with its magnitude kept ("7.6e-06"), for tables that compare small p-values."""
    if value is None:
        return MISSING
    return f"{value:.1e}" if value < 1e-3 else f"{value:.3f}"


def interval(low: float | None, high: float | None, sign: bool = False, digits: int = 3) -> str:
    """A confidence interval: "[0.094, 0.189]"."""
    return f"[{num(low, digits, sign)}, {num(high, digits, sign)}]"


def ci(section: dict[str, Any], sign: bool = False) -> str:
    """A result with its 95% CI, "0.165 [0.120, 0.223]": the accuracy of a model section, or
    with sign=True the delta of a paired comparison ("+0.120 [+0.060, +0.185]")."""
    value = section.get("delta" if sign else "accuracy")
    bounds = interval(section.get("ci_low"), section.get("ci_high"), sign)
    return f"{num(value, sign=sign)} {bounds}"
