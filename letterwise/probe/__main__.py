"""Probe a model's hidden states for letters, layer by layer.

    python -m letterwise.probe --out probe.json                    # the base model of params.yaml
    python -m letterwise.probe --adapter models/adapter --out tuned.json
    python -m letterwise.probe study docs/results/study/smollm2-135m   # every saved run's adapter
    python -m letterwise.probe compare spelling.json negative.json --out diff.json
    python -m letterwise.probe arms docs/results/study/smollm2-135m      # every arm, per layer

Sizes default to params.yaml's `probe:` section; the flags override them. What is probed and
how: letterwise/probe/__init__.py and docs/probe.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from letterwise.io import hub_offline_by_default, write_json

console = Console(stderr=True)


def _sizes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="params file: model preset, seed and the probe: defaults (default: %(default)s)",
    )
    parser.add_argument(
        "--model",
        help="a preset, Hub id or local directory instead of params.yaml's model "
        "(ignored with --adapter: the adapter names its base)",
    )
    parser.add_argument(
        "--train-strings",
        type=int,
        help="training-vocabulary strings to fit on (default: probe.train_strings)",
    )
    parser.add_argument(
        "--words", type=int, help="held-out words to test on (default: probe.words)"
    )
    parser.add_argument(
        "--split",
        choices=("validation", "test"),
        help="the held-out words' split (default: probe.split)",
    )
    parser.add_argument(
        "--layer-step",
        type=int,
        help="probe every Nth layer; embeddings and last always (default: probe.layer_step)",
    )
    parser.add_argument(
        "--lens-questions",
        type=int,
        help="position and count questions each for the logit lens; 0 = no lens "
        "(default: probe.lens_questions)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m letterwise.probe",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n")[1],
    )
    _sizes(parser)
    parser.add_argument(
        "--adapter",
        type=Path,
        help="a LoRA adapter folder (stages.train's models/adapter); absent = the base model",
    )
    parser.add_argument("--out", type=Path, required=True, help="the JSON to write (atomically)")
    parser.add_argument(
        "--timing", type=Path, help="also write wall seconds and the CPU model to this JSON"
    )
    return parser


def build_study_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m letterwise.probe study",
        description="Write <arm>-seed<k>/probe.json in every saved study run folder of DIR that "
        "lacks one, from that run's adapter in the DVC cache (read-only).",
    )
    parser.add_argument(
        "study_dir",
        type=Path,
        metavar="DIR",
        help="a model's study folder, e.g. docs/results/study/smollm2-135m",
    )
    parser.add_argument(
        "--clone",
        type=Path,
        default=None,
        help="the study's clone (default: .study/clone of the main repository)",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="the DVC cache (default: .dvc/cache of the main repository)",
    )
    _sizes(parser)
    return parser


def build_compare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m letterwise.probe compare",
        description="Per task and layer: selectivity of FIRST minus SECOND, with a bootstrap CI "
        "over the same held-out words (e.g. spelling minus negative control).",
    )
    parser.add_argument("first", type=Path, help="probe JSON of the first arm")
    parser.add_argument("second", type=Path, help="probe JSON of the second arm")
    parser.add_argument("--out", type=Path, help="write the comparison here (default: print it)")
    parser.add_argument(
        "--bootstrap", type=int, default=1000, help="resamples (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
    return parser


def settings_from(args: argparse.Namespace) -> tuple[Any, Any]:
    """(params, probe settings with the flags applied), validated by letterwise.params."""
    from letterwise.params import ParamsError, ProbeParams, load_params

    params = load_params(args.params)
    if args.model:
        params = params.model_copy(update={"model": args.model})
    flags = {
        "train_strings": args.train_strings,
        "words": args.words,
        "split": args.split,
        "layer_step": args.layer_step,
        "lens_questions": args.lens_questions,
    }
    merged = params.probe.model_dump() | {k: v for k, v in flags.items() if v is not None}
    try:
        return params, ProbeParams.model_validate(merged)
    except ValueError as exc:
        raise ParamsError(f"probe settings are invalid: {exc}") from None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def probe_one(params: Any, settings: Any, adapter: Path | None, label: str) -> dict[str, Any]:
    """Load the base model of params (or the adapter's base + adapter) and probe it."""
    from letterwise.probe.items import check_tokens_belong
    from letterwise.probe.run import lens_rows, load_model, prepare_items, probe_model

    prepared = prepare_items(settings, seed=params.seed)
    questions = lens_rows(settings.split, settings.lens_questions)
    model_name, model, tokenizer = load_model(params.model, adapter)
    check_tokens_belong(tokenizer, model_name)
    result = probe_model(
        model,
        tokenizer,
        settings,
        seed=params.seed,
        prepared=prepared,
        lens_questions=questions,
        console=console,
        label=label,
    )
    return {"model": model_name, "adapter": None if adapter is None else str(adapter), **result}


def main_run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    params, settings = settings_from(args)
    started = time.monotonic()
    result = probe_one(params, settings, args.adapter, "tuned" if args.adapter else "base")
    seconds = time.monotonic() - started
    result["seconds"]["total"] = round(seconds, 1)
    write_json(args.out, result)
    if args.timing:
        write_json(
            args.timing,
            {
                "wall_seconds": round(seconds, 1),
                "cpu": cpu_model(),
                "command": "python -m letterwise.probe " + " ".join(argv),
                "parts": result["seconds"],
            },
        )
    console.print(f"wrote {args.out} ({seconds:.0f} s)")
    return 0


def build_arms_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m letterwise.probe arms",
        description="Per task and layer: each study arm's selectivity (seeds averaged), "
        "spelling - negative control and positive control - negative control with bootstrap CIs "
        "over the shared held-out words, and the reading; writes DIR/probe_arms.json.",
    )
    parser.add_argument(
        "study_dir", type=Path, metavar="DIR",
        help="a model's study folder with <arm>-seed<k>/probe.json files",
    )  # fmt: skip
    parser.add_argument(
        "--base", type=Path, default=None,
        help="the base model's probe JSON (default: docs/results/probe/<model>-base.json if "
        "present; 'none' leaves the base out)",
    )  # fmt: skip
    parser.add_argument(
        "--bootstrap", type=int, default=2000, help="resamples (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
    return parser


def main_arms(argv: list[str]) -> int:
    from letterwise.probe.arms import DEFAULT_BASE_DIR, SUMMARY_FILE, study_probes, summarise_arms

    args = build_arms_parser().parse_args(argv)
    if not args.study_dir.is_dir():
        raise SystemExit(f"{args.study_dir}: no such folder")
    base_file = args.base or DEFAULT_BASE_DIR / f"{args.study_dir.name}-base.json"
    base = None
    if str(args.base) != "none":
        if base_file.is_file():
            base = json.loads(base_file.read_text())
        elif args.base is not None:
            raise SystemExit(f"--base {base_file}: no such file")
    try:
        summary = summarise_arms(
            study_probes(args.study_dir), base, n_resamples=args.bootstrap, seed=args.seed
        )
    except ValueError as error:
        raise SystemExit(f"{args.study_dir}: {error}") from None
    summary["base_file"] = str(base_file) if base is not None else None
    write_json(args.study_dir / SUMMARY_FILE, summary)
    for task, entry in summary["tasks"].items():
        top = max(entry["differences"]["spelling - negative_control"],
                  key=lambda row: abs(row["difference"]))  # fmt: skip
        console.print(
            f"{task}: {entry['reading']}; largest spelling - negative at layer {top['layer']}: "
            f"{top['difference']:+.3f} [{top['ci_low']:+.3f}, {top['ci_high']:+.3f}]"
        )
    console.print(f"wrote {args.study_dir / SUMMARY_FILE}")
    return 0


def _main_repo() -> Path:
    import subprocess

    common = subprocess.run(
        ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return Path(common).parent


def main_study(argv: list[str]) -> int:
    from letterwise.probe.study import PROBE_FILE, AdapterMissing, materialise_adapter, pending

    args = build_study_parser().parse_args(argv)
    params, settings = settings_from(args)
    root = _main_repo() if args.clone is None or args.cache is None else Path(".")
    clone = args.clone or root / ".study" / "clone"
    cache = args.cache or root / ".dvc" / "cache"
    todo = pending(args.study_dir)
    console.print(f"{len(todo)} run folder(s) without {PROBE_FILE} in {args.study_dir}")
    failed = 0
    for folder, run in todo:
        with tempfile.TemporaryDirectory(prefix="probe-adapter-") as tmp:
            try:
                adapter = materialise_adapter(clone, cache, run["experiment"], Path(tmp))
            except AdapterMissing as exc:
                console.print(f"[red]{folder.name}: {exc}[/red]")
                failed += 1
                continue
            started = time.monotonic()
            result = probe_one(params, settings, adapter, folder.name)
            result["seconds"]["total"] = round(time.monotonic() - started, 1)
            result.update(run, adapter=f"{run['experiment']}:models/adapter")
            write_json(folder / PROBE_FILE, result)
            console.print(f"wrote {folder / PROBE_FILE}")
    return 1 if failed else 0


def main_compare(argv: list[str]) -> int:
    from letterwise.probe.arms import compare

    args = build_compare_parser().parse_args(argv)
    first, second = (json.loads(p.read_text()) for p in (args.first, args.second))
    result = {
        "first": str(args.first),
        "second": str(args.second),
        "difference": "selectivity(first) - selectivity(second)",
        "tasks": compare(first, second, seed=args.seed, n_resamples=args.bootstrap),
    }
    if args.out:
        write_json(args.out, result)
    else:
        print(json.dumps(result, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    hub_offline_by_default()  # before transformers is imported
    if argv[:1] == ["study"]:
        return main_study(argv[1:])
    if argv[:1] == ["compare"]:
        return main_compare(argv[1:])
    if argv[:1] == ["arms"]:
        return main_arms(argv[1:])
    return main_run(argv)


if __name__ == "__main__":
    sys.exit(main())
