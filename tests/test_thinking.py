"""letterwise.eval.thinking: the trace-spelling parser, the use gap, trace statistics on scripted
outputs (no model), and one slow end-to-end run on the random-weight qwen3-tiny."""

from __future__ import annotations

import json

import pytest

from letterwise.eval import thinking
from letterwise.eval.thinking import (
    evaluate,
    mode_params,
    newcombe_difference,
    reasoning_text,
    spelling_attempts,
    thinking_trace,
    trace_spelling,
    use_gap,
)
from letterwise.params import Params

# --- the parser ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "word", "expected"),
    [
        ("Let me spell it: S-T-R-A-W-B-E-R-R-Y. Now count.", "strawberry", "strawberry"),
        ("s, t, r, a, w, b, e, r, r, and y", "strawberry", "strawberry"),
        ("Spelled out:\n1. c\n2. a\n3. t\nSo", "cat", "cat"),
        ("Letter 1: D, Letter 2: O, Letter 3: G.", "dog", "dog"),
        ("s (1), t (2), o (3), p (4)", "stop", "stop"),
        ("**W** **O** **R** **L** **D**", "world", "world"),
        ("'b', 'e', 'r', 'y'", "berry", "bery"),  # no 5-letter attempt: the closest of all
        # a right-length attempt wins over a closer-looking wrong-length one
        (
            "First: s-t-r-a-w-b-e-r-y. Recheck: s-t-r-a-w-b-e-r-r-y. Done",
            "strawberry",
            "strawberry",
        ),
        ("k-i-t-c-h-e-m, no wait, k-i-t-c-h-e-n", "kitchen", "kitchen"),  # the closest
        ("c-a-p, or maybe c-u-t", "cat", "cut"),  # both 1 away: the later one
        ("c-a-t, c-a-t", "cat", "catcat"),  # only separators between: one run (documented)
        ("s-t-r and then more words", "strawberry", None),  # 3 letters < half of 10
        ("The word strawberry has three r's.", "strawberry", None),  # written whole
        ("straw-berry", "strawberry", None),  # chunks are not letters
        ("I think a cat isn't it", "cat", None),  # stray letters, a contraction
        ("", "cat", None),
        (None, "cat", None),
    ],
)
def test_trace_spelling_on_hand_written_traces(text, word, expected):
    assert trace_spelling(text, word) == expected


def test_spelling_attempts_keep_every_run_in_order():
    assert spelling_attempts("it's a-b-c; the r's: x, y and z") == ["abc", "xyz"]
    assert spelling_attempts("e.g. words") == ["eg"]


def test_thinking_trace_and_reasoning_text():
    assert thinking_trace("<think>\nc-a-t\n</think>\n\na") == "c-a-t"
    assert thinking_trace("<think>\nc-a-t and on") == "c-a-t and on"  # unclosed: to the end
    assert thinking_trace("c-a-t\n</think>\n\na") == "c-a-t"  # <think> was in the prompt
    assert thinking_trace("a") is None
    assert reasoning_text("<think>x-y-z</think>a", "thinking") == "x-y-z"
    assert reasoning_text("a", "thinking") is None
    assert reasoning_text("c-a-t, so a", "non-thinking") == "c-a-t, so a"


# --- the use gap -----------------------------------------------------------------------------


# Wilson 95% (z = 1.959964, z^2 = 3.841459) for 3 of 4: centre (0.75 + z^2/8) / (1 + z^2/4)
# = 1.230182 / 1.960365 = 0.627528; half width z * sqrt(0.75 * 0.25 / 4 + z^2 / 64) / 1.960365
# = 1.959964 * 0.326953 / 1.960365 = 0.326886; so [0.300642, 0.954414]. 1 of 4 mirrors it:
# [0.045586, 0.699358]. Newcombe for 0.75 - 0.25 = 0.5: low 0.5 - sqrt(0.449358^2 + 0.449358^2)
# = -0.135489, high 0.5 + sqrt(0.204414^2 + 0.204414^2) = 0.789082.
def _samples(spelled, correct):
    return [{"spelled_right": s, "correct": c} for s, c in zip(spelled, correct, strict=True)]


def test_use_gap_on_hand_made_records():
    samples = _samples(
        [True] * 4 + [False] * 4 + [None] * 2,
        [True, True, True, False, True, False, False, False, True, False],
    )
    gap = use_gap(samples)
    assert (gap["n"], gap["n_spelled_right"], gap["n_spelled_wrong"], gap["n_no_spelling"]) == (
        10,
        4,
        4,
        2,
    )
    right, wrong = gap["accuracy_given_right"], gap["accuracy_given_wrong"]
    assert right["accuracy"] == 0.75 and wrong["accuracy"] == 0.25
    assert right["ci_low"] == pytest.approx(0.300642, abs=1e-5)
    assert right["ci_high"] == pytest.approx(0.954414, abs=1e-5)
    assert wrong["ci_low"] == pytest.approx(0.045586, abs=1e-5)
    assert wrong["ci_high"] == pytest.approx(0.699358, abs=1e-5)
    assert gap["accuracy_given_no_spelling"]["accuracy"] == 0.5
    assert gap["gap"] == pytest.approx(0.5)
    assert gap["gap_ci_low"] == pytest.approx(-0.135489, abs=1e-5)
    assert gap["gap_ci_high"] == pytest.approx(0.789082, abs=1e-5)


def test_use_gap_with_an_empty_side_is_none():
    gap = use_gap(_samples([True, True, None], [True, False, False]))
    assert gap["accuracy_given_right"]["accuracy"] == 0.5
    assert gap["accuracy_given_wrong"] == {
        "accuracy": None,
        "ci_low": None,
        "ci_high": None,
        "n": 0,
    }
    assert (gap["gap"], gap["gap_ci_low"], gap["gap_ci_high"]) == (None, None, None)
    assert use_gap([])["n"] == 0


def test_newcombe_difference_of_equal_accuracies_straddles_zero():
    side = {"accuracy": 0.5, "ci_low": 0.2, "ci_high": 0.8}
    diff = newcombe_difference(side, side)
    assert diff["gap"] == 0.0
    assert diff["ci_low"] == pytest.approx(-((0.3**2 * 2) ** 0.5))
    assert diff["ci_high"] == pytest.approx((0.3**2 * 2) ** 0.5)


# --- both modes on scripted outputs ------------------------------------------------------------

ROWS = {
    "position": [
        {"id": "p0", "task": "position", "word": "cat", "expected": "a", "question": "2nd?"}
    ],
    "count": [{"id": "c0", "task": "count", "word": "tattoo", "expected": "3", "question": "t's?"}],
}
SCRIPT = {
    "thinking": {
        "p0": [
            "<think>\nc-a-t: the 2nd letter is a\n</think>\n\na",
            "<think>\nc-a-r-t\n</think>\n\nr",
        ],
        "c0": [
            "<think>\nt-a-t-t-o-o has three t's\n</think>\n\n3",
            "<think>\nt-a-t-t-o-o and so on",
        ],
    },
    "non-thinking": {"p0": ["a", "b"], "c0": ["3", "t-a-t-o-o: 2"]},
}


def _scripted(calls):
    def answer(params, rows):
        calls.append(params)
        return [SCRIPT[params.eval.mode][row["id"]] for row in rows], {"batch_size": 7}

    return answer


def _words(text):  # a stand-in tokenizer: one token per whitespace-separated piece
    return len(text.split())


def test_both_modes_on_scripted_outputs():
    from letterwise.generation import QWEN3_SAMPLING

    base = Params().model_copy(
        update={"eval": Params().eval.model_copy(update={"temperature": 0.3, "top_p": 0.5})}
    )
    by_mode = {m: mode_params(base, m, n_samples=2, thinking_budget=64) for m in thinking.MODES}
    calls = []
    result = evaluate(ROWS, by_mode, _scripted(calls), _words, seed=0)

    assert [p.eval.mode for p in calls] == ["thinking", "non-thinking"]
    for mode in thinking.MODES:  # params' 0.3 / 0.5 are ignored: each mode's own values
        sampling = result["modes"][mode]["sampling"]
        assert {k: sampling[k] for k in QWEN3_SAMPLING[mode]} == QWEN3_SAMPLING[mode]
        assert sampling["n_samples"] == 2 and sampling["decoding"] == "sampled"
        assert result["modes"][mode]["batch_size"] == 7
    assert result["modes"]["thinking"]["thinking_budget"] == 64
    assert result["modes"]["non-thinking"]["thinking_budget"] is None

    think = result["modes"]["thinking"]["tasks"]
    # position: traces "c-a-t: the 2nd letter is a" (6 pieces) and "c-a-r-t" (1)
    assert think["position"]["unclosed_share"] == 0.0
    assert think["position"]["traced_share"] == 1.0
    assert think["position"]["mean_trace_tokens"] == 3.5
    assert think["position"]["max_trace_tokens"] == 6
    assert think["position"]["accuracy"]["accuracy"] == 0.5
    assert think["position"]["majority_vote"]["accuracy"] == 1.0  # "a" vs "r": the earlier
    gap = think["position"]["use_gap"]
    assert (gap["n_spelled_right"], gap["n_spelled_wrong"], gap["gap"]) == (1, 1, 1.0)
    # count: one closed trace (4 pieces), one cut off (4 pieces, unclosed, scored wrong)
    assert think["count"]["unclosed_share"] == 0.5
    assert think["count"]["mean_trace_tokens"] == 4.0
    assert think["count"]["unparseable_rate"] == 0.5
    assert think["count"]["use_gap"]["accuracy_given_right"]["accuracy"] == 0.5
    assert think["count"]["use_gap"]["gap"] is None  # nothing spelled wrong

    plain = result["modes"]["non-thinking"]["tasks"]
    assert plain["position"]["traced_share"] == 0.0
    assert plain["position"]["mean_trace_tokens"] is None
    assert plain["position"]["use_gap"]["n_no_spelling"] == 2
    assert plain["count"]["use_gap"]["n_spelled_wrong"] == 1  # "t-a-t-o-o" in the answer
    assert plain["count"]["use_gap"]["accuracy_given_wrong"]["accuracy"] == 0.0

    assert result["thinking_minus_non_thinking"]["position"]["delta"] == 0.0
    records = {(r["mode"], r["id"]): r for r in result["records"]}
    assert len(records) == 4
    sample = records[("thinking", "p0")]["samples"][1]
    assert sample == {
        "output": SCRIPT["thinking"]["p0"][1],
        "parsed": "r",
        "correct": False,
        "unclosed": False,
        "trace_tokens": 1,
        "trace_spelling": "cart",
        "spelled_right": False,
    }
    assert records[("thinking", "c0")]["samples"][1]["unclosed"] is True


def test_trace_length_counts_qwen3_tokens():
    from letterwise.modeling import load_tokenizer
    from letterwise.presets import resolve_preset

    count = thinking.token_counter(load_tokenizer(resolve_preset("qwen3-tiny")))
    # "s-t-r" is "s", "-t", "-r" in Qwen3's vocabulary
    assert count(thinking_trace("<think>\ns-t-r\n</think>\n\nr")) == 3
    assert count("") == 0


def test_cli_flags_all_have_help():
    parser = thinking.build_parser()
    assert all(action.help for action in parser._actions)


# --- end to end on qwen3-tiny -----------------------------------------------------------------


@pytest.mark.slow
def test_end_to_end_on_qwen3_tiny(qwen3_data, tmp_path, monkeypatch):
    from letterwise import generation

    seen = []
    real_generate = generation.generate

    def spy(model, tokenizer, prompts, **kwargs):
        seen.append((prompts, kwargs["sampling"], kwargs["max_new_tokens"]))
        return real_generate(model, tokenizer, prompts, **kwargs)

    monkeypatch.setattr(generation, "generate", spy)
    out = tmp_path / "thinking.json"
    thinking.main(
        [
            "--dataset", str(qwen3_data / "data/dataset/hf"),
            "--params", str(qwen3_data / "params.yaml"),
            "--max-questions", "2", "--n-samples", "2", "--thinking-budget", "16",
            "--out", str(out),
        ]
    )  # fmt: skip
    result = json.loads(out.read_text())
    assert result["note"] == thinking.RANDOM_WEIGHTS_NOTE
    assert result["model"] == "qwen3-tiny" and result["n_samples"] == 2
    assert result["n_questions"] == {"position": 2, "count": 2}
    assert set(result["modes"]) == set(thinking.MODES)
    for mode, want in generation.QWEN3_SAMPLING.items():
        section = result["modes"][mode]
        assert {k: section["sampling"][k] for k in want} == want
        assert section["batch_size"] >= 1
        for task in ("position", "count"):
            summary = section["tasks"][task]
            assert summary["n_questions"] == 2 and summary["n_samples"] == 4
            assert set(summary) >= {
                "accuracy", "majority_vote", "unclosed_share", "mean_trace_tokens", "use_gap",
            }  # fmt: skip
    assert set(result["thinking_minus_non_thinking"]) == {"position", "count"}
    assert len(result["records"]) == 2 * 4
    for record in result["records"]:
        assert len(record["samples"]) == 2
        assert set(record["samples"][0]) == {
            "output", "parsed", "correct", "unclosed", "trace_tokens", "trace_spelling",
            "spelled_right",
        }  # fmt: skip

    # each mode generated with its own template, budgets and sampling
    assert [s.temperature for _, s, _ in seen] == [0.6, 0.7]
    assert [s.top_p for _, s, _ in seen] == [0.95, 0.8]
    (think_prompts, _, think_budgets), (plain_prompts, _, plain_budgets) = seen
    assert all(p.endswith("<|im_start|>assistant\n") for p in think_prompts)
    assert all(p.endswith("</think>\n\n") for p in plain_prompts)
    assert [t - p for t, p in zip(think_budgets, plain_budgets, strict=True)] == [16] * 4
