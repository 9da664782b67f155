"""The docs run: every bash block in README.md and docs/ is marked runnable or says why not,
and the runnable ones are executed, verbatim and in order, in a fresh copy of the repository.

The copy runs on the `qwen3-tiny` preset with small sizes (the commands are the same; only
params.yaml differs: tests.test_pipeline.TINY_RUN), after one `dvc repro` standing in for
`make repro` (the session's `tiny_repro` clone, copied).
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from tests.conftest import REPO_ROOT
from tests.test_pipeline import VENV_BIN, copy_clone

DOCS = ["README.md"] + sorted(f"docs/{p.name}" for p in (REPO_ROOT / "docs").glob("*.md"))
BLOCK = re.compile(r"(?:<!-- (runnable|not-runnable: [^>]+) -->\n[ \t]*)?```bash\n(.*?)```", re.S)


def bash_blocks(doc: str) -> list[tuple[str | None, str]]:
    text = (REPO_ROOT / doc).read_text()
    return [(marker, body) for marker, body in BLOCK.findall(text)]


@pytest.mark.parametrize("doc", DOCS)
def test_every_bash_block_is_marked(doc):
    unmarked = [body.splitlines()[0] for marker, body in bash_blocks(doc) if not marker]
    assert not unmarked, (
        f"{doc}: bash blocks without <!-- runnable --> or <!-- not-runnable: why -->: {unmarked}"
    )


def runnable_blocks() -> list[tuple[str, str]]:
    return [
        (doc, body) for doc in DOCS for marker, body in bash_blocks(doc) if marker == "runnable"
    ]


# What a command's comment claims about which stages run, and how to check it in DVC's output.
# Each (phrase in the comment, stages that must run, stages that must not) is written from the
# pipeline's shape (dvc.yaml), not from DVC's output.
ALL_STAGES = (
    "filter_tokens",
    "build_dataset",
    "train",
    "eval_spelling",
    "eval_position",
    "probe",
    "publish",
)
DATA = ("filter_tokens", "build_dataset")
EVALS = ("eval_spelling", "eval_position")
CLAIMS = (
    ("every stage is skipped", (), ALL_STAGES),
    ("no retraining", EVALS, (*DATA, "train")),
    ("eval + publish only", (*EVALS, "publish"), (*DATA, "train")),
    ("retrains", ("train", *EVALS), DATA),
    ("train, eval, publish", ("train", *EVALS, "publish"), DATA),
)


def stage_claims(command: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(must run, must not run) claimed by a command's trailing comment; empty if none."""
    comment = command.partition("#")[2]
    must, must_not = set(), set()
    for phrase, ran, skipped in CLAIMS:
        if phrase in comment:
            must |= set(ran)
            must_not |= set(skipped)
    return tuple(sorted(must)), tuple(sorted(must_not))


def stages_run(output: str) -> set[str]:
    return {stage for stage in ALL_STAGES if f"Running stage '{stage}'" in output}


def commands_of(body: str) -> list[str]:
    """One entry per shell command of a block (backslash continuations joined)."""
    return [c for c in body.replace("\\\n", " ").splitlines() if c.strip()]


def test_stage_claims_are_parsed():
    must, must_not = stage_claims("dvc repro   # nothing changed: every stage is skipped")
    assert must == () and "train" in must_not and "publish" in must_not
    must, must_not = stage_claims(
        "dvc exp run -S eval.n_samples=3  # re-evaluates only; no retraining"
    )
    assert must == ("eval_position", "eval_spelling") and "train" in must_not
    assert stage_claims("dvc exp show  # one row per run") == ((), ())


def test_some_blocks_are_runnable():
    docs_with_runs = {doc for doc, _ in runnable_blocks()}
    assert {"README.md", "docs/experiment_reproduction.md"} <= docs_with_runs


@pytest.mark.slow  # tens of minutes: a dvc repro, a LoRA retrain, sampled re-evaluations
def test_runnable_blocks_run_in_a_fresh_clone(tiny_repro, tmp_path):
    clone = copy_clone(tiny_repro[0], tmp_path / "clone")
    env = {
        **os.environ,
        "PATH": VENV_BIN + os.pathsep + os.environ["PATH"],
        "HF_HUB_OFFLINE": "1",
        "DVC_NO_ANALYTICS": "1",
        "GIT_AUTHOR_NAME": "docs",
        "GIT_AUTHOR_EMAIL": "docs@test",
        "GIT_COMMITTER_NAME": "docs",
        "GIT_COMMITTER_EMAIL": "docs@test",
    }
    steps = [("setup", "dvc repro\n"), *runnable_blocks()]
    checked = 0
    for doc, body in steps:
        # A block whose commands claim which stages run is run command by command, so each
        # claim is checked against that command's own output.
        commands = commands_of(body)
        claimed = any(stage_claims(c) != ((), ()) for c in commands)
        for command in commands if claimed else [body]:
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", command],
                cwd=clone,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert result.returncode == 0, (
                f"{doc} block failed:\n{command}\n--- stdout\n{result.stdout[-3000:]}"
                f"\n--- stderr\n{result.stderr[-3000:]}"
            )
            must, must_not = stage_claims(command) if claimed else ((), ())
            ran = stages_run(result.stdout + result.stderr)
            assert set(must) <= ran and not ran & set(must_not), (
                f"{doc}: `{command.strip()}` claims stages {must} run and {must_not} do not; "
                f"DVC ran {sorted(ran)}:\n{result.stdout[-2000:]}"
            )
            checked += bool(must or must_not)
    assert checked >= 3, f"only {checked} stage claims checked"


# --------------------------------------------------------------------------- Qwen3 guide numbers

GUIDE = REPO_ROOT / "docs" / "qwen3_4b_guide.md"
QWEN3_DATA = REPO_ROOT / "docs" / "results" / "qwen3-data"
# Each row label of the guide's token-subset table -> where filter_tokens' details hold it.
SUBSET_ROWS = {
    "vocabulary entries": ("vocab_size",),
    "kept token ids": ("kept_tokens",),
    "kept distinct strings": ("kept_strings",),
    "only as a bare token": ("by_rule", "bare"),
    "only after stripping the leading space": ("by_rule", "leading_space"),
    "both": ("by_rule", "bare+leading_space"),
    "non-ASCII letters": ("dropped", "non_ascii"),
    "punctuation, symbols": ("dropped", "punctuation"),
    "partial UTF-8": ("dropped", "partial_utf8"),
    "whitespace only": ("dropped", "whitespace"),
    "single letters": ("dropped", "too_short"),
    "special and added tokens": ("dropped", "special"),
    "containing digits": ("dropped", "digits"),
    "longer than": ("dropped", "too_long"),
}


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def test_qwen3_guide_counts_are_the_committed_qwen3_data():
    details = json.loads((QWEN3_DATA / "filter_tokens.json").read_text())
    assert details["model"] == "qwen3-4b"
    section = GUIDE.read_text().split("## The English-only token subset")[1].split("\n## ")[0]
    rows = re.findall(r"^\| (.+?) \| ([\d,]+) \|$", section, re.M)
    assert len(rows) == len(SUBSET_ROWS), rows
    for label, count in rows:
        (keys,) = [keys for phrase, keys in SUBSET_ROWS.items() if phrase in label]
        value = details
        for key in keys:
            value = value[key]
        assert _number(count) == value, f"guide row {label!r}: {count} vs {keys} = {value}"
    assert f"{details['vocab_size']:,} entries" in section
    assert f"{details['mean_length']:.1f} letters long" in section
    four_to_seven = sum(details["by_length"][str(n)] for n in range(4, 8))
    assert f"most ({round(100 * four_to_seven / details['kept_strings'])}%)" in section
    smollm2 = json.loads((REPO_ROOT / "metrics/details/filter_tokens.json").read_text())
    assert smollm2["model"] == "smollm2-135m"
    assert (
        f"{smollm2['vocab_size']:,}-entry vocabulary yields {smollm2['kept_strings']:,} strings"
        in section
    )
    dataset = json.loads((QWEN3_DATA / "build_dataset.json").read_text())
    leakage = dataset["leakage"]
    assert leakage["leaked_words"] == 0
    assert (
        f"holds\nout {leakage['held_out_words']} words that split into "
        f"{leakage['mean_tokens_per_word']} tokens" in section
    )


@pytest.mark.slow
def test_qwen3_guide_tokenizer_table_is_what_the_tokenizers_do():
    from letterwise.data.vocab import load_vocab_tokenizer, word_pieces
    from letterwise.presets import PRESETS

    tokenizers = {
        name: load_vocab_tokenizer(PRESETS[name]) for name in ("qwen3-4b", "smollm2-135m")
    }
    section = GUIDE.read_text().split("## Tokenizer patterns")[1].split("\n## ")[0]
    rows = re.findall(r"^\| (\w+) \| (.+?) \| (.+?) \|$", section, re.M)
    rows = [row for row in rows if row[0] != "word"]
    assert len(rows) >= 6
    for word, qwen3, smollm2 in rows:
        for name, cell in (("qwen3-4b", qwen3), ("smollm2-135m", smollm2)):
            assert re.findall(r"`([^`]+)`", cell) == word_pieces(tokenizers[name], word), (
                f"{name} splits {word!r} otherwise than the guide says"
            )
    for name, tokenizer in tokenizers.items():  # "` strawberry` is a single token in both"
        assert len(word_pieces(tokenizer, " strawberry")) == 1, name
