"""Section 2: data, prompts, instruments and candidate sets, controls, statistics."""

from __future__ import annotations

from letterwise.numbers import num
from letterwise.report import tables
from letterwise.report.common import (
    ALPHA,
    VERDICT_COMMAND,
    arms_text,
)
from letterwise.report.loading import (
    FORMAT_NEUTRAL,
    INSTRUMENTS,
    Inputs,
    Run,
    instrument_label,
    instrument_sections,
)

# --------------------------------------------------------------------------- 2. method


def method_section(reference: Run, runs: list[Run], inputs: Inputs) -> list[str]:
    tokens = reference.stage("filter_tokens")
    data = reference.stage("build_dataset")
    sizes = data.get("sizes") or {}
    leak = data.get("leakage") or {}
    bands = (data.get("freq_bands") or {}).get(reference.eval_setting("split")) or {}
    bd = reference.params.get("build_dataset", {})
    present = {k for run in runs for m in run.tasks().values() for k in instrument_sections(m)}
    out = [
        "## 2. Method",
        "",
        "### Data",
        "",
        f"- **Training strings:** the English-letter subset of the tokenizer vocabulary "
        f"({tokens.get('kept_strings', '–')} strings from {tokens.get('kept_tokens', '–')} of "
        f"{tokens.get('vocab_size', '–')} tokens; case and leading-space variants merged); "
        f"{data.get('training_strings', '–')} of them were used "
        f"(build_dataset.max_train_tokens), {bd.get('examples_per_token')} spelling examples "
        f"each: {(sizes.get('train') or {}).get('spelling', '–')} training examples.",
        f"- **Held-out words:** English words that the tokenizer splits into several tokens "
        f"(multi-token share {num(leak.get('multi_token_share'), 2)}, mean "
        f"{num(leak.get('mean_tokens_per_word'), 2)} tokens per word), never a training string "
        f"(leaked words: {leak.get('leaked_words', '–')}; validation/test overlap: "
        f"{leak.get('validation_test_overlap', '–')}), {bd.get('min_word_length')}–"
        f"{bd.get('max_word_length')} letters; split into validation and test by word. "
        f"Test frequency bands: "
        + (", ".join(f"{k} {v}" for k, v in bands.items()) or "–")
        + ".",
        "- **Questions per split:** "
        + "; ".join(
            f"{split}: " + ", ".join(f"{k} {v}" for k, v in s.items() if k != "total")
            for split, s in sizes.items()
        )
        + f". Count questions ask about an absent letter (answer 0) at rate "
        f"{bd.get('count_absent_rate')}.",
        "- **Prompts:** each task has several phrasings and, for spelling, several answer "
        "formats (separators, word-first and spelling-first wording), so the model learns "
        "letters rather than one template; position questions are 1-indexed and include "
        "\"last letter\". Answers pass a tolerant parser (quotes, punctuation, number words, "
        "a thinking block) before exact match.",
        "",
        "### Instruments and candidate sets",
        "",
        "| instrument | what it measures | format-neutral | in these results |",
        "|---|---|---|---|",
    ]
    meaning = {
        "direct": "generation as a user asks, parsed strictly: knowledge and answer format",
        "choice": "log-likelihood of each candidate answer after the question (end of turn "
        "included); candidates: position a–z, count 0…max(9, word length), spelling the "
        "word and four near-misses",
        "cloze": "log-likelihood of each candidate in a slot after a prefilled reply "
        "(\"The 3rd letter of 'x' is '\")",
        "cloze_calibrated": "cloze minus the candidate's log-likelihood for a content-free "
        "placeholder word (contextual calibration, Zhao et al. 2021)",
        "oracle": "cloze with the correct spelling given in context: can the model read a "
        "spelling off?",
        "two_turn": "cloze after a first turn in which the model spelled the word itself",
        "spell_first": "generation: spell the word, then answer",
        "teacher_forced": "spelling only: share of letters predicted top-1 given the correct "
        "prefix",
    }
    for key, label in INSTRUMENTS.items():
        out.append(
            f"| {label} | {meaning[key]} | {'yes' if key in FORMAT_NEUTRAL else 'no'} "
            f"| {'yes' if key in present else 'no'} |"
        )
    out += ["", "### Controls", ""]
    if inputs.verdict is not None:
        arms = inputs.verdict.get("arms") or {}
        out.append(
            "Three arms share the data and vary only training: "
            + arms_text(arms, style="code")
            + ". Negative control: the same recipe trained on letter-free replay turns only; "
            "positive control: trained on position/count questions about training tokens, "
            "tested on the same held-out words. Strategy detectors (first letter, word length, "
            "majority answer, positional prior) test whether an answer habit explains a gain."
        )
    else:
        out.append(
            "Absent from the committed results: the negative-control arm (same recipe, "
            "letter-free replay turns only) and the positive-control arm (trained on "
            "position/count questions about training tokens) have not been run; the verdict "
            f"(`{VERDICT_COMMAND}`) needs them. The answer-habit baselines in section 5 are "
            "the only control here."
        )
    out += ["", "### Statistics", "", *statistics_lines(reference), ""]
    return out


def statistics_lines(reference: Run) -> list[str]:
    """Which CI and which paired test each row of the reference table uses (from each delta's
    `test` field), and the multiple-comparison note."""
    rows: dict[str, list[str]] = {}
    pvalues = []
    for task, metrics in reference.tasks().items():
        for key, section in instrument_sections(metrics).items():
            rows.setdefault(str(section["delta"].get("test")), []).append(
                f"{task} {instrument_label(key)}"
            )
            if section["delta"].get("p_value") is not None:
                pvalues.append(section["delta"]["p_value"])
    out = [
        "| rows | accuracy 95% CI | delta 95% CI | paired test (p) |",
        "|---|---|---|---|",
    ]
    for test, names in rows.items():
        accuracy_ci = (
            "Wilson score interval" if test == "mcnemar_exact"
            else "percentile bootstrap over questions"
        )  # fmt: skip
        out.append(
            f"| {', '.join(names)} | {accuracy_ci} | paired percentile bootstrap over questions "
            f"| {tables.TESTS.get(test, test)} |"
        )
    k = len(pvalues)
    threshold = ALPHA / k if k else None
    passing = sum(p < threshold for p in pvalues) if threshold else 0
    out += [
        "",
        "Wilson: score interval for a proportion of 0/1 answers; bootstrap: percentile "
        "bootstrap over questions (fixed seed); the delta is paired (same questions for base "
        "and fine-tuned). Exact McNemar uses only discordant questions; the sign-flip "
        "permutation test flips the sign of each question's base/tuned difference.",
        "",
        f"**Multiple comparisons.** The reference results table holds {k} paired tests; "
        f"p-values are not adjusted. At a Bonferroni threshold of {ALPHA}/{k} = "
        f"{num(threshold, 4)}, {passing} of {k} remain significant. Across the experiment grid "
        "more tests are made; read single p-values with that in mind and prefer the "
        "intervals.",
    ]
    return out
