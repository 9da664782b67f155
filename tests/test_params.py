"""params.yaml validation: every bad value is named, and nothing expensive runs first."""

from __future__ import annotations

import pytest
import yaml

from letterwise.params import Params, ParamsError, load_params, parse_params
from tests.conftest import REPO_ROOT, write_params


def test_repo_params_are_the_schema_defaults():
    assert load_params(REPO_ROOT / "params.yaml") == Params()


BAD_PARAMS = [
    ({"modle": "qwen3-4b"}, "modle", "unknown key"),
    ({"model": "not a model"}, "model", "preset"),
    ({"seed": -1}, "seed", "greater than or equal to 0"),
    (
        {"filter_tokens": {"min_length": 1}},
        "filter_tokens.min_length",
        "greater than or equal to 2",
    ),
    ({"filter_tokens": {"min_length": 9, "max_length": 4}}, "filter_tokens", "must not exceed"),
    (
        {"build_dataset": {"count_absent_rate": 1.5}},
        "build_dataset.count_absent_rate",
        "less than or equal to 1",
    ),
    ({"build_dataset": {"test_words": "many"}}, "build_dataset.test_words", "valid integer"),
    (
        {"build_dataset": {"max_train_tokens": 0}},
        "build_dataset.max_train_tokens",
        "greater than or equal to 1",
    ),
    ({"train": {"lora": {"r": 0}}}, "train.lora.r", "greater than or equal to 1"),
    ({"train": {"lora": {"target_modules": ["qkv"]}}}, "train.lora.target_modules", "allowed"),
    ({"train": {"lora": {"rank": 8}}}, "train.lora.rank", "unknown key"),
    ({"train": {"backend": "jax"}}, "train.backend", "'auto', 'transformers' or 'unsloth'"),
    ({"train": {"learning_rate": 0}}, "train.learning_rate", "greater than 0"),
    ({"train": {"max_steps": 0}}, "train", "max_steps"),
    ({"eval": {"mode": "think"}}, "eval.mode", "'non-thinking' or 'thinking'"),
    ({"eval": {"decoding": "beam"}}, "eval.decoding", "'greedy' or 'sampled'"),
    ({"eval": {"top_p": 1.5}}, "eval.top_p", "less than or equal to 1"),
    ({"eval": {"n_samples": 4}}, "eval", "decoding: sampled"),
    ({"publish": {"repo_id": "no-slash"}}, "publish.repo_id", "user/name"),
    ({"publish": {"merge": "perhaps"}}, "publish.merge", "valid boolean"),
]


@pytest.mark.parametrize(("raw", "key", "message"), BAD_PARAMS, ids=[b[1] for b in BAD_PARAMS])
def test_bad_params_name_the_key(raw, key, message):
    with pytest.raises(ParamsError) as caught:
        parse_params(raw)
    text = str(caught.value)
    assert f"  {key}: " in text
    assert message in text


def test_unknown_key_lists_allowed_keys():
    with pytest.raises(ParamsError, match=r"allowed keys here: r, alpha, dropout, target_modules"):
        parse_params({"train": {"lora": {"rank": 8}}})


def test_several_problems_are_all_reported():
    with pytest.raises(ParamsError) as caught:
        parse_params({"seed": -1, "eval": {"mode": "x"}})
    assert "seed" in str(caught.value) and "eval.mode" in str(caught.value)


def test_malformed_and_missing_files(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("model: [unclosed")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("- a list")
    with pytest.raises(ParamsError, match="expected a mapping"):
        load_params(tmp_path / "params.yaml")


def test_presets_and_custom_models_are_accepted(tmp_path):
    for model in ("smollm2-135m", "qwen3-4b", "qwen3-tiny", "Qwen/Qwen3-4B", str(tmp_path)):
        assert parse_params({"model": model}).model == model


# stage -> the module whose load_vocab_tokenizer the stage calls
@pytest.mark.parametrize(
    ("stage", "loader_module"),
    [("filter_tokens", "stages.filter_tokens"), ("build_dataset", "letterwise.data.dataset")],
)
def test_data_stages_stop_before_loading_a_tokenizer(stage, loader_module, tmp_path, monkeypatch):
    import importlib

    module = importlib.import_module(f"stages.{stage}")

    def must_not_load(*_args, **_kwargs):
        raise AssertionError("a tokenizer was loaded before params were validated")

    monkeypatch.setattr(
        importlib.import_module(loader_module), "load_vocab_tokenizer", must_not_load
    )
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path, {"filter_tokens": {"min_length": 1}, "build_dataset": {"word_pool": 5}})
    with pytest.raises(ParamsError) as caught:
        module.main([])
    assert "filter_tokens.min_length" in str(caught.value)
    assert "build_dataset.word_pool" in str(caught.value)
    assert not (tmp_path / "data").exists()


def test_params_error_exits_with_message_not_traceback():
    error = ParamsError("params.yaml is invalid:\n  seed: bad")
    assert isinstance(error, SystemExit) and error.code == "params.yaml is invalid:\n  seed: bad"


def test_schema_round_trips_through_yaml():
    dumped = yaml.safe_dump(Params().model_dump())
    assert parse_params(yaml.safe_load(dumped)) == Params()
