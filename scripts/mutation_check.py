"""Do the quick tests notice the bugs that matter? A small mutation check.

Each mutation below is one deliberate bug, written as an exact text substitution in one file
(swapped base/tuned in a delta, an unpaired bootstrap, an ignored seed, an API that refuses
its own limits, a cache key missing what changes answers, a leakage audit that looks away).
The script copies the working tree (git's tracked and untracked, not ignored, files) to a
temporary folder, applies the mutations there one at a time, runs the named quick tests
against each, and prints a table: caught (the tests failed), survived (they passed), or
stale (the text to replace is no longer in the file exactly once: update the mutation).
The checkout itself is never modified. A baseline run first checks that the named tests pass
on the unmutated copy; a mutation is only meaningful against passing tests.

Not part of CI: run it by hand after changing the code these mutations touch, e.g.

    nice -n 10 python scripts/mutation_check.py
    python scripts/mutation_check.py --list
    python scripts/mutation_check.py --only unpaired-bootstrap --only choice-delta-swap

Exit status 0 when every mutation was caught, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # relative to the repository root
    old: str  # must occur exactly once in the file
    new: str
    tests: tuple[str, ...]  # pytest paths or node ids (quick tests)
    what: str


DELTAS = "tests/test_instrument_deltas.py"
STATS = "tests/test_stats.py"
KEYS = "tests/test_answer_keys.py"
SCHEMAS = "tests/test_serve_schemas.py"

MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "choice-delta-swap-in-score-choice",
        "letterwise/eval/instruments.py",
        'choice_delta(records["base"], records["tuned"], seed=seed)',
        'choice_delta(records["tuned"], records["base"], seed=seed)',
        (DELTAS,),
        "score_choice forms the choice delta as base - tuned",
    ),
    Mutation(
        "spell-first-delta-swap",
        "letterwise/eval/instruments.py",
        '[r["accuracy"] for r in scored["base"]], [r["accuracy"] for r in scored["tuned"]]',
        '[r["accuracy"] for r in scored["tuned"]], [r["accuracy"] for r in scored["base"]]',
        (DELTAS,),
        "score_spell_first forms its delta as base - tuned",
    ),
    Mutation(
        "choice-delta-swap",
        "letterwise/eval/choice_metrics.py",
        "[float(r[field]) for r in base], [float(r[field]) for r in tuned], seed=seed",
        "[float(r[field]) for r in tuned], [float(r[field]) for r in base], seed=seed",
        (DELTAS,),
        "choice_delta pairs its fields as base - tuned",
    ),
    Mutation(
        "direct-delta-swap",
        "letterwise/eval/scoring.py",
        '[s["accuracy"] for s in scored["base"]],\n'
        '        [s["accuracy"] for s in scored["tuned"]],',
        '[s["accuracy"] for s in scored["tuned"]],\n'
        '        [s["accuracy"] for s in scored["base"]],',
        (DELTAS,),
        "score_task (direct generation) forms its delta as base - tuned",
    ),
    Mutation(
        "unpaired-bootstrap",
        "letterwise/eval/stats.py",
        "    low, high = _bootstrap_mean_ci(differences, seed=seed, n_resamples=n_resamples)",
        "    rng = np.random.default_rng(seed); draws = [rng.choice(t, t.size).mean()"
        " - rng.choice(b, b.size).mean() for _ in range(n_resamples)];"
        " low, high = float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))",
        (STATS,),
        "paired_delta resamples base and tuned independently (pairs broken)",
    ),
    Mutation(
        "bootstrap-seed-ignored",
        "letterwise/eval/stats.py",
        'method="percentile",\n        rng=np.random.default_rng(seed),',
        'method="percentile",\n        rng=np.random.default_rng(),',
        (f"{STATS}::test_paired_delta_is_deterministic_for_a_seed",),
        "the bootstrap CI ignores its seed",
    ),
    Mutation(
        "permutation-seed-ignored",
        "letterwise/eval/stats.py",
        'alternative="two-sided",\n        rng=np.random.default_rng(seed),',
        'alternative="two-sided",\n        rng=np.random.default_rng(),',
        (f"{STATS}::test_paired_delta_is_deterministic_for_a_seed",),
        "the sign-flip permutation test ignores its seed",
    ),
    Mutation(
        "mcnemar-one-sided",
        "letterwise/eval/stats.py",
        "stats.binomtest(tuned_only, discordant, 0.5).pvalue",
        'stats.binomtest(tuned_only, discordant, 0.5, alternative="greater").pvalue',
        (STATS,),
        "McNemar's p is one-sided (tuned better) instead of two-sided",
    ),
    Mutation(
        "server-refuses-last-index",
        "letterwise/serve/schemas.py",
        "if self.index > len(self.word):",
        "if self.index >= len(self.word):",
        (SCHEMAS,),
        "the API refuses a question about the word's last letter",
    ),
    Mutation(
        "server-word-limit-63",
        "letterwise/serve/schemas.py",
        "MAX_WORD_LENGTH = 64",
        "MAX_WORD_LENGTH = 63",
        (SCHEMAS,),
        "the API refuses 64-letter words",
    ),
    Mutation(
        "server-batch-limit-31",
        "letterwise/serve/schemas.py",
        "MAX_ITEMS = 32",
        "MAX_ITEMS = 31",
        (SCHEMAS,),
        "the API refuses 32-question batches",
    ),
    Mutation(
        "cache-tuned-key-without-adapter",
        "letterwise/eval/answer_cache.py",
        '"tuned": AnswerStore(root, {"model": tuned, **shared}),',
        '"tuned": AnswerStore(root, {"model": base, **shared}),',
        (KEYS,),
        "the fine-tuned answers are keyed without the adapter's hash",
    ),
    Mutation(
        "cache-batch-key-without-sampling",
        "letterwise/generation.py",
        '"sampling": dataclasses.asdict(sampling),\n',
        "",
        (KEYS,),
        "a generation batch's cache key leaves out the sampling settings",
    ),
    Mutation(
        "cache-key-without-code",
        "letterwise/eval/answer_cache.py",
        '"code": code_fingerprint(),\n',
        "",
        (KEYS,),
        "the stores' keys leave out the answer code's digest",
    ),
    Mutation(
        "cache-code-misses-instruments",
        "letterwise/eval/answer_cache.py",
        '    "eval/instruments.py",\n',
        "",
        (KEYS,),
        "the code digest leaves out eval/instruments.py",
    ),
    Mutation(
        "cache-request-without-mode",
        "letterwise/eval/runner.py",
        '"mode": settings.mode,\n',
        "",
        (KEYS,),
        "the whole-evaluation request leaves out the mode",
    ),
    Mutation(
        "audit-ignores-train-rows",
        "letterwise/data/dataset.py",
        "    if in_train:\n",
        "    if in_train and False:\n",
        ("tests/test_leakage_audit.py",),
        "the leakage audit does not look at the train rows",
    ),
    Mutation(
        "test-rows-copied-into-train",
        "letterwise/data/dataset.py",
        "    audit = leakage_audit(tokenizer, training_strings, splits)",
        '    splits["train"] += [dict(r, split="train") for r in splits["test"][:3]]\n'
        "    audit = leakage_audit(tokenizer, training_strings, splits)",
        ("tests/test_data_stages.py::test_held_out_words_never_leak_and_are_multi_token",),
        "build_dataset copies test rows into train (the audit must stop the stage)",
    ),
)


def working_tree_files(repo: Path) -> list[str]:
    """Tracked and untracked-but-not-ignored files: what the tests see in a checkout."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [name for name in listed.split("\0") if name and (repo / name).is_file()]


def copy_tree(repo: Path, target: Path) -> None:
    for name in working_tree_files(repo):
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, destination)


def run_tests(copy: Path, tests: tuple[str, ...], python: str, timeout: float) -> tuple[str, float]:
    """'pass', 'fail', 'no tests', 'error <rc>' or 'timeout', and the wall seconds."""
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    started = time.monotonic()
    try:
        result = subprocess.run(
            [python, "-m", "pytest", *tests, "-q", "-x", "-p", "no:cacheprovider"],
            cwd=copy, env=env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - started
    seconds = time.monotonic() - started
    outcome = {0: "pass", 1: "fail", 5: "no tests"}.get(result.returncode)
    return outcome or f"error {result.returncode}", seconds


def check(mutation: Mutation, copy: Path, python: str, timeout: float) -> tuple[str, float]:
    """Apply one mutation to the copy, run its tests, put the file back."""
    path = copy / mutation.path
    if not path.is_file():
        return "stale (file missing)", 0.0
    original = path.read_text(encoding="utf-8")
    found = original.count(mutation.old)
    if found != 1:
        return f"stale (text found {found} times)", 0.0
    backup = path.with_name(path.name + ".mutation-backup")
    shutil.copy2(path, backup)
    try:
        path.write_text(original.replace(mutation.old, mutation.new), encoding="utf-8")
        outcome, seconds = run_tests(copy, mutation.tests, python, timeout)
    finally:
        shutil.copy2(backup, path)  # the original bytes and modification time
        backup.unlink()
    verdict = {"fail": "caught", "pass": "SURVIVED"}.get(outcome, outcome)
    return verdict, seconds


def table(rows: list[tuple[str, ...]]) -> str:
    header = ("mutation", "file", "tests", "result", "seconds")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Apply a fixed list of deliberate bugs, one at a time, to a temporary copy "
        "of the working tree and report which the named quick tests catch.",
    )
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME",
        help="run only this mutation (repeatable; names from --list); default: all",
    )  # fmt: skip
    parser.add_argument(
        "--list", action="store_true", help="print the mutations and their tests, then exit"
    )
    parser.add_argument(
        "--repo", type=Path, default=REPO_ROOT,
        help="the checkout to copy (default: the one holding this script)",
    )  # fmt: skip
    parser.add_argument(
        "--python", default=sys.executable,
        help="interpreter that runs pytest (default: the one running this script)",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=float, default=900.0,
        help="seconds one mutation's test run may take before it counts as 'timeout' (900)",
    )  # fmt: skip
    parser.add_argument(
        "--skip-baseline", action="store_true",
        help="do not first check that the named tests pass on the unmutated copy",
    )  # fmt: skip
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    known = {m.name for m in MUTATIONS}
    unknown = sorted(set(args.only) - known)
    if unknown:
        raise SystemExit(f"unknown mutation(s) {unknown}; see --list for the names")
    chosen = [m for m in MUTATIONS if not args.only or m.name in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.what}\n    {m.path}; tests: {' '.join(m.tests)}")
        return 0
    if not (args.repo / ".git").exists():
        raise SystemExit(f"{args.repo} is not a git checkout (--repo)")
    with tempfile.TemporaryDirectory(prefix="letterwise-mutations-") as scratch:
        copy = Path(scratch) / "repo"
        copy_tree(args.repo, copy)
        if not args.skip_baseline:
            tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
            outcome, seconds = run_tests(copy, tests, args.python, args.timeout)
            print(f"baseline (unmutated, {len(tests)} test targets): {outcome}, {seconds:.0f} s")
            if outcome != "pass":
                raise SystemExit("the named tests fail without any mutation; fix them first")
        rows = []
        for mutation in chosen:
            verdict, seconds = check(mutation, copy, args.python, args.timeout)
            tests = ", ".join(t.removeprefix("tests/") for t in mutation.tests)
            rows.append((mutation.name, mutation.path, tests, verdict, f"{seconds:.0f}"))
            print(f"{mutation.name}: {verdict} ({seconds:.0f} s)", flush=True)
    print()
    print(table(rows))
    caught = sum(row[3] == "caught" for row in rows)
    print(f"\n{caught} of {len(rows)} mutations caught")
    return 0 if caught == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
