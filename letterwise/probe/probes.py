"""Linear probes per layer, their control tasks, selectivity and bootstrap CIs over words.

Probe: standardised features (fitted on the fitting strings) into scikit-learn's
LogisticRegression, one per sub-probe (a letter, a position). C is chosen per sub-probe on the
validation slice of the TRAINING strings, by the task's own metric; held-out words are only
ever scored, never used to fit or to choose.

Control task (Hewitt & Liang 2019): each token TYPE (the input's last token, the one whose
state is probed) gets a fixed random label drawn from the training label distribution of that
sub-probe; the same probe family with the same C is fitted to those labels. A control label can
only be predicted by memorising token identity, so selectivity = metric - control metric is
what the states say about letters beyond what a probe of this capacity gets from identity and
label frequencies. A held-out word whose last token is also a training string's last token gets
that type's control label, as a seen type does in Hewitt & Liang.

Metrics: letter_in_token is the mean F1 over letters (Kaushal & Mahowald 2022), over letters
present in at least one test word; letter_position and letter_count are mean accuracy over
their columns (positions; letters). Every metric is a function of per-word counts, so a
bootstrap over words is one matrix product with resampling weights (`bootstrap_weights`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from letterwise.eval.stats import CONFIDENCE

DEFAULT_CS = (0.01, 0.1, 1.0)
MAX_ITER = 500


# --------------------------------------------------------------------------- control labels


def control_labels(
    train_types: Sequence[int],
    test_types: Sequence[int],
    train_labels: np.ndarray,
    test_labels: np.ndarray,
    *,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Control labels for fitting and test items: per column, one label per token type, drawn
    from that column's training label distribution; -1 stays -1 (same items as the real task)."""
    types = sorted(set(train_types) | set(test_types))
    rng = np.random.default_rng(seed)
    train_out = np.full_like(train_labels, -1)
    test_out = np.full_like(test_labels, -1)
    for k in range(train_labels.shape[1]):
        observed = train_labels[:, k][train_labels[:, k] >= 0]
        values, counts = np.unique(observed, return_counts=True)
        drawn = rng.choice(values, size=len(types), p=counts / counts.sum())
        by_type = dict(zip(types, drawn, strict=True))
        for labels, out, item_types in (
            (train_labels, train_out, train_types),
            (test_labels, test_out, test_types),
        ):
            for i, t in enumerate(item_types):
                if labels[i, k] >= 0:
                    out[i, k] = by_type[t]
    return train_out, test_out


# --------------------------------------------------------------------------- metrics


def bootstrap_weights(n: int, n_resamples: int, *, seed: int) -> np.ndarray:
    """(n_resamples, n) multinomial counts: each row is one resample of the n words."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples).astype(float)


def score(
    task: str, truth: np.ndarray, predicted: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """The task metric for each row of `weights` ((B, n); None = the words as they are, B=1)."""
    weights = np.ones((1, truth.shape[0])) if weights is None else weights
    valid = truth >= 0
    if task == "letter_in_token":
        present = valid & (truth == 1)
        tp = weights @ (present & (predicted == 1))
        fp = weights @ (valid & (truth == 0) & (predicted == 1))
        fn = weights @ (present & (predicted != 1))
        keep = present.any(axis=0)  # a letter no test word holds has no F1
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = 2 * tp / (2 * tp + fp + fn)
        return np.nanmean(f1[:, keep], axis=1) if keep.any() else np.full(len(weights), np.nan)
    right = weights @ (valid & (predicted == truth))
    total = weights @ valid
    keep = valid.any(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = right / total
    return np.nanmean(accuracy[:, keep], axis=1) if keep.any() else np.full(len(weights), np.nan)


def interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The percentile interval, at the house confidence level (letterwise.eval.stats) unless
    told otherwise."""
    tail = (1 - confidence) / 2 * 100
    low, high = np.nanpercentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def selectivity_samples(
    task: str,
    records: dict[str, np.ndarray],
    weights: np.ndarray,
) -> np.ndarray:
    """Selectivity under each resample: metric(probe) - metric(control) on the same words."""
    real = score(task, records["truth"], records["probe"], weights)
    control = score(task, records["control_truth"], records["control"], weights)
    return real - control


# --------------------------------------------------------------------------- fitting


class _Constant:
    """The one class a column's fitting labels hold: LogisticRegression needs two."""

    def __init__(self, label: int) -> None:
        self.label = label

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.full(len(x), self.label)


def _fit(x: np.ndarray, y: np.ndarray, c: float) -> Any:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    if len(np.unique(y)) < 2:
        return _Constant(int(y[0]))
    # one BLAS thread: these fits are small, and several threads contending for the cores
    # (with each other and the torch threads) made them 50x slower on a 2-core machine
    with warnings.catch_warnings(), threadpool_limits(1):
        # a capped iteration count on a probe is a slightly less fitted probe, not an error
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(C=c, max_iter=MAX_ITER).fit(x, y)


def _column_metric(task: str, truth: np.ndarray, predicted: np.ndarray) -> float:
    value = score(task, truth[:, None], predicted[:, None])[0]
    return -1.0 if np.isnan(value) else float(value)


def _predict(model: Any, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = np.full(len(x), -1)
    if mask.any():
        out[mask] = model.predict(x[mask])
    return out


def fit_layer(
    task: str,
    x_fit: np.ndarray,
    x_val: np.ndarray,
    x_test: np.ndarray,
    labels: dict[str, np.ndarray],
    *,
    cs: Sequence[float] = DEFAULT_CS,
) -> dict[str, Any]:
    """Every sub-probe of one task at one layer, and its control.

    `labels`: fit / val / test and control_fit / control_val / control_test, each
    (n_items, n_columns) with -1 = no label. Returns per-item predictions for val and test
    (real and control), the chosen C per column and the majority-class predictions."""
    mean, std = x_fit.mean(0), x_fit.std(0) + 1e-6  # standardise on the fitting strings only
    x_fit, x_val, x_test = ((x - mean) / std for x in (x_fit, x_val, x_test))
    n_cols = labels["fit"].shape[1]
    out = {
        key: np.full(labels[key.split("_", 1)[1]].shape, -1)
        for key in ("probe_val", "probe_test", "control_val", "control_test", "majority_test")
    }
    chosen: list[float] = []
    for k in range(n_cols):
        rows = labels["fit"][:, k] >= 0
        val_rows, test_rows = labels["val"][:, k] >= 0, labels["test"][:, k] >= 0
        y = labels["fit"][rows, k]
        values, counts = np.unique(y, return_counts=True)
        out["majority_test"][test_rows, k] = values[np.argmax(counts)]
        best: tuple[float, float, Any] | None = None
        for c in cs:  # on the validation slice of the training strings
            model = _fit(x_fit[rows], y, c)
            predicted = _predict(model, x_val, val_rows)
            metric = _column_metric(task, labels["val"][:, k], predicted)
            if best is None or metric > best[0]:
                best = (metric, c, model)
        assert best is not None
        _, c, model = best
        chosen.append(c)
        out["probe_val"][:, k] = _predict(model, x_val, val_rows)
        out["probe_test"][:, k] = _predict(model, x_test, test_rows)
        control = _fit(x_fit[rows], labels["control_fit"][rows, k], c)  # same capacity
        out["control_val"][:, k] = _predict(control, x_val, val_rows)
        out["control_test"][:, k] = _predict(control, x_test, test_rows)
    return {**out, "C": chosen}


def layer_summary(
    task: str,
    layer: int,
    fitted: dict[str, Any],
    labels: dict[str, np.ndarray],
    weights: np.ndarray,
) -> dict[str, Any]:
    """One layer's numbers: test metric of probe, control and majority baseline, selectivity
    with its bootstrap CI over words, and the validation-slice (in-vocabulary) metrics."""
    records = {
        "truth": labels["test"],
        "probe": fitted["probe_test"],
        "control_truth": labels["control_test"],
        "control": fitted["control_test"],
    }
    probe = float(score(task, labels["test"], fitted["probe_test"])[0])
    control = float(score(task, labels["control_test"], fitted["control_test"])[0])
    low, high = interval(selectivity_samples(task, records, weights))
    return {
        "layer": layer,
        "probe": probe,
        "control": control,
        "selectivity": probe - control,
        "selectivity_ci_low": low,
        "selectivity_ci_high": high,
        "majority": float(score(task, labels["test"], fitted["majority_test"])[0]),
        "val_probe": float(score(task, labels["val"], fitted["probe_val"])[0]),
        "val_control": float(score(task, labels["control_val"], fitted["control_val"])[0]),
        "C": fitted["C"],
    }


def best_layer(layers: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The layer of highest selectivity (the earliest on a tie)."""
    top = max(layers, key=lambda row: (row["selectivity"], -row["layer"]))
    keys = ("layer", "selectivity", "selectivity_ci_low", "selectivity_ci_high", "probe", "control")
    return {key: top[key] for key in keys}


def group_selectivity(
    task: str, group: Sequence[dict[str, np.ndarray]], weights: np.ndarray
) -> np.ndarray:
    """Mean selectivity over a group's runs (an arm's seeds) under each resample of the words
    they share: the seeds are averaged inside each resample."""
    return np.mean([selectivity_samples(task, records, weights) for records in group], axis=0)


def compare_groups(
    task: str,
    first: Sequence[dict[str, np.ndarray]],
    second: Sequence[dict[str, np.ndarray]],
    *,
    n_resamples: int,
    seed: int,
    confidence: float = CONFIDENCE,
) -> dict[str, float]:
    """Mean selectivity of the `first` runs minus that of the `second` at one layer, paired
    over the same words (one set of resampling weights for every run), with its bootstrap CI.
    One run per side is the arm-versus-arm comparison; several are an arm's seeds, and the CI
    then covers the words, not the seeds."""
    sizes = {records["truth"].shape[0] for records in [*first, *second]}
    if len(sizes) != 1:
        raise ValueError(f"the runs were tested on different numbers of words: {sorted(sizes)}")
    (n,) = sizes
    weights = bootstrap_weights(n, n_resamples, seed=seed)
    diff = group_selectivity(task, first, weights) - group_selectivity(task, second, weights)
    whole = np.ones((1, n))
    point = group_selectivity(task, first, whole) - group_selectivity(task, second, whole)
    low, high = interval(diff, confidence)
    return {"difference": float(point[0]), "ci_low": low, "ci_high": high}
