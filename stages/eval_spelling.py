"""Stage `eval_spelling`: base vs fine-tuned on held-out spelling (the trained skill).

Same questions for both models; writes metrics/eval_spelling.json,
data/predictions/eval_spelling.jsonl and dvclive/eval_spelling/plots/ (the work:
letterwise/eval/runner.py).
"""

from __future__ import annotations

from letterwise.io import hub_offline_by_default

STAGE = "eval_spelling"


def main(argv: list[str] | None = None) -> None:
    hub_offline_by_default()  # before the runner imports transformers, which read it once
    from letterwise.eval.runner import STAGE_TASKS, build_parser, run_stage

    parser = build_parser(STAGE, __doc__.splitlines()[0])
    run_stage(STAGE, STAGE_TASKS[STAGE], parser.parse_args(argv))


if __name__ == "__main__":
    main()
