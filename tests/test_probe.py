"""letterwise.probe: probes recover a planted layer and only it, control tasks catch identity
memorisation, the logit lens reads a scripted model's layers as worked out by hand, no held-out
word reaches probe training, and the JSON has its schema. Offline; no model download."""

from __future__ import annotations

import json
import math
import random
import string
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from letterwise.params import ParamsError, ProbeParams, parse_params
from letterwise.probe import items as it
from letterwise.probe.arms import compare
from letterwise.probe.probes import bootstrap_weights, control_labels, score
from letterwise.probe.run import chosen_layers, prepare_items, probe_states

# --------------------------------------------------------------------------- labels


def test_labels_of_banana_worked_by_hand() -> None:
    letters = it.task_labels(["banana"], "letter_in_token").labels[0]
    assert [string.ascii_lowercase[i] for i in np.flatnonzero(letters)] == ["a", "b", "n"]
    position = it.task_labels(["banana"], "letter_position").labels[0]
    # b a n a n, last a (a=0, b=1, n=13)
    assert position.tolist() == [1, 0, 13, 0, 13, 0]
    count = it.task_labels(["banana", "rrrrr", "abc"], "letter_count", "anr").labels
    assert count.tolist() == [[3, 2, 0], [0, 0, 3], [1, 0, 0]]  # 5 r's cap at 3+


def test_position_labels_missing_on_short_words() -> None:
    labels = it.task_labels(["abc"], "letter_position").labels[0]
    assert labels.tolist() == [0, 1, 2, -1, -1, 2]


def test_predictions_round_trip() -> None:
    for task, words in (
        ("letter_in_token", ["ab", "zz"]),
        ("letter_position", ["abc", "hello"]),
        ("letter_count", ["eerie", "tot"]),
    ):
        labels = it.task_labels(words, task, "et").labels
        assert (it.decode_predictions(task, it.encode_predictions(task, labels)) == labels).all()


# --------------------------------------------------------------------------- metrics


def test_f1_and_accuracy_by_hand() -> None:
    truth = np.array([[1, 0], [1, 1], [0, 0]])
    predicted = np.array([[1, 0], [0, 1], [1, 0]])
    # column 0: tp 1, fp 1, fn 1 -> F1 2/4 = 0.5; column 1: tp 1 -> F1 1; mean 0.75
    assert score("letter_in_token", truth, predicted)[0] == pytest.approx(0.75)
    # accuracy per column ignoring -1: col 0 1/2, col 1 2/3 -> mean 7/12
    truth = np.array([[3, 2], [4, -1], [5, 1]])
    predicted = np.array([[3, 2], [0, 9], [9, 1]])
    assert score("letter_position", truth, predicted)[0] == pytest.approx((1 / 3 + 1) / 2)
    # weights: the first word twice, the third not at all -> col0 2/3, col1 1 (only word 0)
    weights = np.array([[2.0, 1.0, 0.0]])
    assert score("letter_count", truth, predicted, weights)[0] == pytest.approx((2 / 3 + 1) / 2)


def test_bootstrap_weights_resample_every_word_count() -> None:
    weights = bootstrap_weights(7, 50, seed=1)
    assert weights.shape == (50, 7) and (weights.sum(1) == 7).all()


# --------------------------------------------------------------------------- control labels


def test_control_labels_are_fixed_per_type_and_follow_the_label_distribution() -> None:
    train_labels = np.array([[0], [0], [0], [1], [-1]])
    test_labels = np.array([[1], [0], [1]])
    train_types, test_types = [10, 10, 11, 12, 13], [10, 12, 99]
    c_train, c_test = control_labels(train_types, test_types, train_labels, test_labels, seed=3)
    assert c_train[0, 0] == c_train[1, 0] == c_test[0, 0]  # type 10 everywhere
    assert c_train[3, 0] == c_test[1, 0]  # type 12
    assert c_train[4, 0] == -1  # no label stays no label
    assert set(c_train[:4, 0]) | set(c_test[:, 0]) <= {0, 1}  # only labels seen in training
    # over many types the drawn labels follow the training distribution (3/4 zeros)
    many = np.zeros((4000, 1), dtype=int)
    many[:1000] = 1
    drawn, _ = control_labels(list(range(4000)), [], many, np.zeros((0, 1), dtype=int), seed=0)
    assert abs((drawn == 1).mean() - 0.25) < 0.03


# --------------------------------------------------------------------------- planted layers


def _random_words(n: int, rng: random.Random) -> list[str]:
    return ["".join(rng.choice("abcdefgh") for _ in range(rng.randint(3, 7))) for _ in range(n)]


def _planted(words: list[str], letters: str) -> np.ndarray:
    """Features a linear probe can read every label from: presence, one-hot letter per
    position column, one-hot count per count letter."""
    presence = it.task_labels(words, "letter_in_token").labels
    position = it.task_labels(words, "letter_position").labels
    count = it.task_labels(words, "letter_count", letters).labels
    blocks = [presence.astype(float)]
    for k in range(position.shape[1]):
        blocks.append(np.stack([(position[:, k] == c) for c in range(26)], 1).astype(float))
    for k in range(count.shape[1]):
        blocks.append(np.stack([(count[:, k] == c) for c in range(4)], 1).astype(float))
    return np.concatenate(blocks, 1) * 3.0


def _synthetic(seed: int = 0) -> tuple[np.ndarray, dict, list[int], ProbeParams]:
    """Three layers for 300 training strings + 120 words: 0 noise, 1 letters planted, 2 token
    identity only (a random vector per type; every word shares a type with a training string,
    as a held-out word's last token may be a training token, but not its letters)."""
    rng = random.Random(seed)
    train, words = _random_words(300, rng), _random_words(120, rng)
    settings = ProbeParams(
        train_strings=300, words=120, count_letters="abc", bootstrap=200, cs=[0.1, 1.0]
    )
    n = len(train) + len(words)
    nrng = np.random.default_rng(seed)
    planted = _planted(train + words, settings.count_letters)
    d = planted.shape[1]
    types = list(range(len(train))) + [rng.randrange(len(train)) for _ in words]
    identity = nrng.normal(size=(len(train), d))[types] * 3.0
    states = np.stack(
        [
            nrng.normal(size=(n, d)),
            planted + 0.1 * nrng.normal(size=(n, d)),
            identity + 0.1 * nrng.normal(size=(n, d)),
        ]
    )
    fit, val = it.fit_val_split(len(train), 0.2, seed=seed)
    prepared = {"train": train, "words": words, "fit": fit, "val": val}
    return states, prepared, types, settings


@pytest.fixture(scope="module")
def synthetic_results() -> dict:
    states, prepared, types, settings = _synthetic()
    out = {}
    for task in it.TASKS:
        summary, records = probe_states(task, states, [0, 1, 2], prepared, types, settings, seed=0)
        out[task] = (summary, records)
    return out


@pytest.mark.parametrize("task", it.TASKS)
def test_the_planted_layer_is_recovered_and_the_others_are_not(synthetic_results, task) -> None:
    summary, _ = synthetic_results[task]
    noise, planted, identity = summary["layers"]
    assert summary["best"]["layer"] == 1
    assert planted["probe"] > 0.9  # every label is a linear read-out of layer 1
    assert planted["selectivity"] > 0.4 and planted["selectivity_ci_low"] > 0.2
    # noise: no better than its control beyond sampling error
    assert abs(noise["selectivity"]) < 0.15
    assert noise["selectivity_ci_low"] < 0.05


@pytest.mark.parametrize("task", it.TASKS)
def test_control_task_catches_identity_memorisation(synthetic_results, task) -> None:
    summary, _ = synthetic_results[task]
    _, planted, identity = summary["layers"]
    # layer 2 holds only the token type: the control labels (a function of type) are read off
    # it, the words' own letters are not (they are independent of the shared type)
    assert identity["control"] > 0.75
    assert identity["selectivity"] < -0.2
    # layer 1 holds no type identity: the control task is no better than chance there
    assert planted["control"] < identity["control"] - 0.3


def test_compare_of_a_file_with_itself_is_zero(synthetic_results) -> None:
    words = " ".join(_synthetic()[1]["words"])
    result = {
        "items": {"words": words},
        "records": {task: synthetic_results[task][1] for task in it.TASKS},
    }
    diff = compare(result, result, n_resamples=100)
    for task in it.TASKS:
        assert [row["layer"] for row in diff[task]] == [0, 1, 2]
        assert all(row["difference"] == row["ci_low"] == row["ci_high"] == 0 for row in diff[task])
    with pytest.raises(ValueError, match="different held-out words"):
        compare(result, {**result, "items": {"words": "other"}})


def test_chosen_layers_keep_the_embeddings_and_the_last() -> None:
    assert chosen_layers(31, 1) == list(range(31))
    assert chosen_layers(31, 4) == [0, 4, 8, 12, 16, 20, 24, 28, 30]
    assert chosen_layers(3, 2) == [0, 2]


# --------------------------------------------------------------------------- leakage


def _write_data(
    tmp_path: Path, tokens: list[str], splits: dict[str, list[str]]
) -> tuple[Path, Path]:
    tokens_file = tmp_path / "tokens.jsonl"
    tokens_file.write_text("".join(json.dumps({"string": s}) + "\n" for s in tokens))
    dataset = tmp_path / "jsonl"
    dataset.mkdir()
    for split, words in splits.items():
        rows = [{"task": "spelling", "word": w, "split": split} for w in words]
        (dataset / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tokens_file, dataset


def test_no_heldout_word_of_either_split_reaches_probe_training(tmp_path: Path) -> None:
    validation, test = ["berry", "Straw"], ["apple", "melon"]
    vocab = ["berry", "straw", "APPLE", "melon", "kiwi", "fig", "plum", "pear", "lime", "date"]
    tokens_file, dataset = _write_data(tmp_path, vocab, {"validation": validation, "test": test})
    settings = ProbeParams(train_strings=20, words=10, val_share=0.25)
    settings = settings.model_copy(update={"train_strings": 6})
    prepared = prepare_items(settings, seed=0, dataset_dir=dataset, tokens_file=tokens_file)
    assert sorted(prepared["train"]) == ["date", "fig", "kiwi", "lime", "pear", "plum"]
    assert prepared["words"] == ["apple", "melon"]
    assert prepared["heldout_checked"] == 4
    with pytest.raises(ValueError, match="only 6 training strings"):
        prepare_items(
            settings.model_copy(update={"train_strings": 7}),
            seed=0,
            dataset_dir=dataset,
            tokens_file=tokens_file,
        )


def test_check_no_leak_names_the_leaked_words() -> None:
    it.check_no_leak(["fig", "kiwi"], ["apple"])
    with pytest.raises(it.LeakError, match="berry"):
        it.check_no_leak(["fig", "Berry"], ["apple", "berry"])


# --------------------------------------------------------------------------- params


def test_probe_params_are_validated() -> None:
    assert parse_params({}).probe.train_strings == 400
    with pytest.raises(ParamsError, match="count_letters"):
        parse_params({"probe": {"count_letters": "aa"}})
    with pytest.raises(ParamsError, match="count_letters"):
        parse_params({"probe": {"count_letters": "A1"}})
    with pytest.raises(ParamsError, match="probe.layers: unknown key"):
        parse_params({"probe": {"layers": 3}})


# --------------------------------------------------------------------------- logit lens


class _ScriptedLM:
    """A causal LM whose last-position hidden states per layer are given, with a final "norm"
    that doubles its input and an unembedding that maps hidden unit 0 to token A and unit 1 to
    token B (every other token's logit is 0)."""

    def __init__(self, states: list[list[float]], vocab: int, token_a: int, token_b: int) -> None:
        import torch

        self.states = [torch.tensor(s) for s in states]
        head = torch.nn.Linear(len(states[0]), vocab, bias=False)
        with torch.no_grad():
            head.weight.zero_()
            head.weight[token_a, 0] = 1.0
            head.weight[token_b, 1] = 1.0
        self.head = head
        self.model = SimpleNamespace(norm=lambda x: 2.0 * x)
        self.training = False
        self.param = torch.nn.Parameter(torch.zeros(1))

    def parameters(self):
        return iter([self.param])

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    def get_output_embeddings(self):
        return self.head

    def __call__(self, input_ids, **_: object):
        batch, width = input_ids.shape
        hidden = tuple(s.expand(batch, width, -1) for s in self.states)
        return SimpleNamespace(hidden_states=hidden)


@pytest.fixture(scope="module")
def qwen_tokenizer():
    from letterwise.modeling import load_tokenizer
    from letterwise.presets import resolve_preset

    return load_tokenizer(resolve_preset("qwen3-tiny"))  # bundled, offline


def test_logit_lens_on_a_scripted_model_worked_by_hand(qwen_tokenizer) -> None:
    from letterwise.probe.lens import read_slots, summarise

    row = {
        "id": "q1",
        "task": "position",
        "word": "toast",
        "position": 5,
        "is_last": True,
        "expected": "t",
        "question": "What is the last letter of 'toast'?",
        "letter": "t",
    }
    (token_t,) = qwen_tokenizer(" t", add_special_tokens=False)["input_ids"]
    (token_s,) = qwen_tokenizer(" s", add_special_tokens=False)["input_ids"]
    vocab = 151936
    # layer 0: all logits 0; layer 1: (1, 2) doubled by the norm -> t 2, s 4;
    # layer 2 (last, already normed, so NOT doubled): t 3, s 0
    model = _ScriptedLM([[0.0, 0.0], [1.0, 2.0], [3.0, 0.0]], vocab, token_t, token_s)
    per_question = read_slots(model, qwen_tokenizer, [row], layers=[0, 1, 2], batch_size=4)
    e = math.exp
    expected_p = [1 / vocab, e(2) / (e(2) + e(4) + vocab - 2), e(3) / (e(3) + vocab - 1)]
    assert per_question["p"][0] == pytest.approx(expected_p, rel=1e-4)
    # ties are not "above": rank 1 at layer 0; s beats t at layer 1; t alone on top at layer 2
    assert per_question["vocab_rank"][0].tolist() == [1, 2, 1]
    assert per_question["candidate_rank"][0].tolist() == [1, 2, 1]
    summary = summarise(per_question, [0, 1, 2], seed=0)
    assert summary["peak"] == {"layer": 2, "mean_p": pytest.approx(expected_p[2], rel=1e-4)}
    assert summary["late_drop"] == 0
    assert [r["top1_candidates"] for r in summary["layers"]] == [1.0, 0.0, 1.0]


def test_logit_lens_late_suppression(qwen_tokenizer) -> None:
    from letterwise.probe.lens import read_slots, summarise

    row = {
        "id": "q1",
        "task": "count",
        "word": "toast",
        "letter": "t",
        "expected": "2",
        "question": "How many 't's are in 'toast'?",
        "is_last": False,
        "position": None,
    }
    ids = qwen_tokenizer("Answer: 2", add_special_tokens=False)["input_ids"]
    two = ids[-1]  # the slot token of "2" as the cloze tokenization makes it
    (one,) = [i for i in qwen_tokenizer("Answer: 1", add_special_tokens=False)["input_ids"][-1:]]
    vocab = 151936
    # layer 1 puts "2" far ahead (logit 2 x 5 = 10); the last layer prefers "1" (logit 4 vs 0)
    model = _ScriptedLM([[0.0, 0.0], [5.0, 0.0], [0.0, 4.0]], vocab, two, one)
    per_question = read_slots(model, qwen_tokenizer, [row], layers=[0, 1, 2], batch_size=4)
    e = math.exp
    p1, p2 = e(10) / (e(10) + vocab - 1), 1 / (e(4) + vocab - 1)
    summary = summarise(per_question, [0, 1, 2], seed=0)
    assert summary["peak"]["layer"] == 1
    assert summary["late_drop"] == pytest.approx(p1 - p2, rel=1e-4)
    assert per_question["candidate_rank"][0].tolist() == [1, 1, 2]


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_cli_on_qwen3_tiny_writes_the_schema(tmp_path: Path, monkeypatch) -> None:
    from letterwise.probe.__main__ import main

    repo = Path(__file__).resolve().parents[1]
    if (
        not (repo / "data/tokens/tokens.jsonl").is_file()
        or not (repo / "data/dataset/jsonl").is_dir()
    ):
        pytest.skip("needs data/tokens and data/dataset (dvc repro build_dataset)")
    monkeypatch.chdir(repo)
    out, timing = tmp_path / "probe.json", tmp_path / "timing.json"
    assert (
        main(
            [
                "--model",
                "qwen3-tiny",
                "--train-strings",
                "60",
                "--words",
                "20",
                "--lens-questions",
                "4",
                "--layer-step",
                "1",
                "--out",
                str(out),
                "--timing",
                str(timing),
            ]
        )
        == 0
    )
    result = json.loads(out.read_text())
    assert result["model"] == "qwen3-tiny" and result["adapter"] is None
    assert result["settings"]["layers"] == [0, 1, 2]  # the tiny Qwen3 has 2 blocks
    assert result["leakage"]["in_training"] == 0
    assert len(result["items"]["words"].split()) == result["items"]["n_words"] == 20
    for task in it.TASKS:
        layers = result["probes"][task]["layers"]
        assert [r["layer"] for r in layers] == [0, 1, 2]
        assert set(layers[0]) >= {
            "probe",
            "control",
            "selectivity",
            "selectivity_ci_low",
            "selectivity_ci_high",
            "majority",
            "val_probe",
            "C",
        }
        assert len(result["records"][task]["layers"]["1"]["probe"].split()) == 20
    for task in ("position", "count"):
        assert result["lens"][task]["n"] == 4 and len(result["lens"][task]["layers"]) == 3
    assert json.loads(timing.read_text())["wall_seconds"] > 0


# --------------------------------------------------------------------------- study adapters


def _git(cwd: Path, *args: str) -> str:
    import subprocess

    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
        "PATH": "/usr/bin:/bin",
    }
    return subprocess.run(
        ["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True, env=env
    ).stdout.strip()


def test_study_adapter_is_copied_from_the_cache_read_only(tmp_path: Path) -> None:
    from letterwise.probe.study import AdapterMissing, materialise_adapter, pending

    clone, cache = tmp_path / "clone", tmp_path / "cache"
    clone.mkdir()
    _git(clone, "init", "-q")
    lock = {
        "stages": {
            "train": {
                "outs": [
                    {"path": "metrics/details/train.json", "md5": "0" * 32},
                    {"path": "models/adapter", "md5": "ab" + "1" * 30 + ".dir"},
                ]
            }
        }
    }
    (clone / "dvc.lock").write_text(json.dumps(lock))
    _git(clone, "add", "dvc.lock")
    _git(clone, "commit", "-qm", "exp")
    sha = _git(clone, "rev-parse", "HEAD")
    head_before = (clone / ".git" / "HEAD").read_text()
    listing = [
        {"md5": "cd" + "2" * 30, "relpath": "adapter_config.json"},
        {"md5": "ef" + "3" * 30, "relpath": "sub/weights.bin"},
    ]
    for md5, body in (
        ("ab" + "1" * 30 + ".dir", json.dumps(listing)),
        ("cd" + "2" * 30, "{}"),
        ("ef" + "3" * 30, "weights"),
    ):
        path = cache / "files" / "md5" / md5[:2] / md5[2:]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    dest = materialise_adapter(clone, cache, sha, tmp_path / "adapter")
    assert (dest / "adapter_config.json").read_text() == "{}"
    assert (dest / "sub/weights.bin").read_text() == "weights"
    assert (clone / ".git" / "HEAD").read_text() == head_before
    (cache / "files" / "md5" / "ef" / ("3" * 30)).unlink()
    with pytest.raises(AdapterMissing, match="redone on this machine"):
        materialise_adapter(clone, cache, sha, tmp_path / "again")
    with pytest.raises(AdapterMissing, match="redone on this machine"):
        materialise_adapter(clone, cache, "f" * 40, tmp_path / "again")

    study = tmp_path / "study"
    for name in ("spelling-seed1", "negative_control-seed1", "notes"):
        (study / name).mkdir(parents=True)
        (study / name / "EXPERIMENT").write_text(sha + "\n")
    (study / "spelling-seed1" / "probe.json").write_text("{}")
    assert [(f.name, run) for f, run in pending(study)] == [
        ("negative_control-seed1", {"arm": "negative_control", "seed": 1, "experiment": sha})
    ]


@pytest.mark.slow
def test_probe_stage_on_qwen3_tiny(tmp_path: Path, monkeypatch) -> None:
    import shutil

    import yaml

    from tests.test_evaluate import random_adapter

    repo = Path(__file__).resolve().parents[1]
    if (
        not (repo / "data/tokens/tokens.jsonl").is_file()
        or not (repo / "data/dataset/jsonl").is_dir()
    ):
        pytest.skip("needs data/tokens and data/dataset (dvc repro build_dataset)")
    shutil.copytree(repo / "data/tokens", tmp_path / "data/tokens")
    shutil.copytree(repo / "data/dataset/jsonl", tmp_path / "data/dataset/jsonl")
    random_adapter(tmp_path, seed=0)
    params = {
        "model": "qwen3-tiny",
        "probe": {
            "train_strings": 50,
            "words": 15,
            "lens_questions": 3,
            "layer_step": 1,
            "bootstrap": 100,
        },
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    from stages.probe import main

    main([])
    headline = json.loads((tmp_path / "metrics/probe.json").read_text())
    details = json.loads((tmp_path / "metrics/details/probe.json").read_text())
    for task in it.TASKS:
        base, tuned = (details[m]["probes"][task]["best"] for m in ("base", "tuned"))
        assert headline[task] == {
            "base": base["selectivity"],
            "tuned": tuned["selectivity"],
            "tuned_layer": tuned["layer"],
        }
        assert [r["layer"] for r in details["tuned_minus_base"][task]] == [0, 1, 2]
        plot = tmp_path / f"dvclive/probe/plots/custom/selectivity_{task}.json"
        assert [point["layer"] for point in json.loads(plot.read_text())] == [0, 1, 2]
    # the embeddings are untouched by a LoRA on q/v: tuned and base agree exactly at layer 0
    layer0 = details["tuned_minus_base"]["letter_in_token"][0]
    assert layer0["difference"] == 0


def test_lens_at_the_last_layer_is_the_models_own_logits() -> None:
    """transformers' convention the lens relies on: the last hidden state is already normed, so
    unembedding it as is gives the model's logits (and a middle layer needs the norm)."""
    import torch

    from letterwise.modeling import load_base_model
    from letterwise.presets import resolve_preset
    from letterwise.probe.lens import final_norm, lens_logits

    model, tokenizer = load_base_model(resolve_preset("qwen3-tiny"), backend="transformers")
    ids = torch.tensor([tokenizer("The last letter is")["input_ids"]])
    with torch.inference_mode():
        output = model(input_ids=ids, output_hidden_states=True)
        hidden = [h[:, -1, :] for h in output.hidden_states]
        last = len(hidden) - 1
        assert torch.allclose(
            lens_logits(model, hidden, last), output.logits[:, -1].float(), atol=1e-5
        )
        middle = model.get_output_embeddings()(final_norm(model)(hidden[1]))
        assert torch.allclose(lens_logits(model, hidden, 1), middle.float())


def test_a_token_subset_of_another_tokenizer_is_refused(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.jsonl"
    rows = [{"string": "berry", "token_ids": [7]}, {"string": "straw", "token_ids": [9]}]
    tokens.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ours = SimpleNamespace(decode=lambda ids: {7: " Berry", 9: "straw"}[ids[0]])
    it.check_tokens_belong(ours, "toy", tokens)  # leading space and case are the token's own
    theirs = SimpleNamespace(decode=lambda ids: {7: "ber", 9: "straw"}[ids[0]])
    with pytest.raises(ValueError, match=r"not made from toy's tokenizer \(1 of 2 .*'berry'"):
        it.check_tokens_belong(theirs, "toy", tokens)
