"""Stage `probe`: are the letters in the hidden states, base vs fine-tuned, layer by layer?

Linear probes (letter in token, letter at position, letter count) with control tasks and a
logit lens at the cloze answer slot, for the base model and the trained adapter, on the same
training strings and held-out words (the work: letterwise/probe/). Writes
metrics/details/probe.json (per model and layer, plus tuned - base selectivity per layer with
CIs), metrics/probe.json (per task the best layer and its selectivity, base and tuned) and
dvclive/probe/plots/custom/selectivity_<task>.json.
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path
from typing import Any

from letterwise.io import atomic_dir, hub_offline_by_default, write_metrics

STAGE = "probe"
ADAPTER_DIR = Path("models/adapter")
METRICS_FILE = Path("metrics/probe.json")
DVCLIVE_DIR = Path("dvclive/probe")
INPUTS = {
    Path(
        "data/tokens/tokens.jsonl"
    ): "the filter_tokens stage makes it (`dvc repro filter_tokens`)",
    Path("data/dataset/jsonl"): "the build_dataset stage makes it (`dvc repro build_dataset`)",
    ADAPTER_DIR / "adapter_config.json": "the train stage makes it (`dvc repro train`)",
}


def headline(details: dict[str, Any]) -> dict[str, Any]:
    """Per task: the best layer's selectivity for base and tuned, and the tuned model's best
    layer (what `dvc exp show` lists). Nine columns, not twelve: the other stages' headlines use
    50 of the 60-column budget (tests/test_compare.py); the base model's best layer, the same
    in every experiment on one model, is in metrics/details/probe.json (`base.probes.<task>.
    best`) with everything else."""
    from letterwise.probe.items import TASKS

    out = {}
    for task in TASKS:
        base, tuned = (details[m]["probes"][task]["best"] for m in ("base", "tuned"))
        out[task] = {
            "base": base["selectivity"],
            "tuned": tuned["selectivity"],
            "tuned_layer": tuned["layer"],
        }
    return out


def write_plots(details: dict[str, Any]) -> None:
    """Selectivity by layer, base and tuned, one dvclive plot per task (written whole)."""
    from dvclive import Live
    from letterwise.probe.items import TASKS

    with atomic_dir(DVCLIVE_DIR) as tmp:
        live = Live(dir=str(tmp), save_dvc_exp=False, dvcyaml=None, report=None)
        for task in TASKS:
            rows = zip(
                details["base"]["probes"][task]["layers"],
                details["tuned"]["probes"][task]["layers"],
                strict=True,
            )
            points = [
                {"layer": b["layer"], "base": b["selectivity"], "tuned": t["selectivity"]}
                for b, t in rows
            ]
            live.log_plot(
                f"selectivity_{task}",
                points,
                x="layer",
                y=["base", "tuned"],
                template="linear",
                y_label="selectivity",
                title=f"{task}: probe minus control, by layer",
            )


def main(argv: list[str] | None = None) -> None:
    hub_offline_by_default()  # before transformers is imported
    parser = argparse.ArgumentParser(
        prog="python -m stages.probe", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--params", default="params.yaml", help="path to params.yaml (default: params.yaml)"
    )
    args = parser.parse_args(argv)

    from rich.console import Console

    from letterwise.modeling import read_provenance
    from letterwise.params import ParamsError, load_params
    from letterwise.probe.arms import compare
    from letterwise.probe.run import lens_rows, load_model, prepare_items, probe_model

    console = Console()
    try:
        params = load_params(args.params)
        for path, hint in INPUTS.items():
            if not path.exists():
                raise FileNotFoundError(f"{path} is missing; {hint}")
        trained_on = read_provenance(ADAPTER_DIR)["model"]
        if trained_on != params.model:
            raise ValueError(
                f"{ADAPTER_DIR} was trained on model {trained_on!r} but params.yaml "
                f"has model {params.model!r}; retrain (`dvc repro train`)"
            )
        settings = params.probe
        prepared = prepare_items(settings, seed=params.seed)  # checks no held-out word leaks
        questions = lens_rows(settings.split, settings.lens_questions)
    except (ParamsError, FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"{STAGE}: {exc}") from None

    details: dict[str, Any] = {"model": params.model}
    for label, adapter in (("base", None), ("tuned", ADAPTER_DIR)):
        started = time.monotonic()
        _, model, tokenizer = load_model(params.model, adapter, backend=params.train.backend)
        details[label] = probe_model(
            model,
            tokenizer,
            settings,
            seed=params.seed,
            prepared=prepared,
            lens_questions=questions,
            console=console,
            label=label,
        )
        details[label]["seconds"]["total"] = round(time.monotonic() - started, 1)
        del model, tokenizer  # free this model before the next one loads
        gc.collect()
    details["tuned_minus_base"] = compare(
        details["tuned"], details["base"], seed=params.seed, n_resamples=settings.bootstrap
    )
    write_plots(details)
    write_metrics(METRICS_FILE, details, headline(details))  # the headline last: "done"
    console.print(f"{STAGE}: wrote {METRICS_FILE} and metrics/details/probe.json")


if __name__ == "__main__":
    main()
