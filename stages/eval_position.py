"""Stage `eval_position`: base vs fine-tuned on letter position and count (the transfer result).

Neither task was trained; same questions for both models. Writes metrics/eval_position.json,
data/predictions/eval_position.jsonl and dvclive/eval_position/plots/ (the work:
letterwise/eval/runner.py).
"""

from __future__ import annotations

from letterwise.io import hub_offline_by_default

STAGE = "eval_position"


def main(argv: list[str] | None = None) -> None:
    hub_offline_by_default()  # before the runner imports transformers, which read it once
    from letterwise.eval.runner import STAGE_TASKS, build_parser, run_stage

    parser = build_parser(STAGE, __doc__.splitlines()[0])
    run_stage(STAGE, STAGE_TASKS[STAGE], parser.parse_args(argv))


if __name__ == "__main__":
    main()
