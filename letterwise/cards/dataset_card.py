"""The dataset card (Hub-style README.md with YAML metadata), built from real sizes and audit."""

from __future__ import annotations

from letterwise.params import Params
from letterwise.presets import resolve_preset


def size_category(total: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if total < limit:
            return label
    return "100K<n<1M" if total < 1_000_000 else "n>1M"


def replay_section(replay: dict | None) -> str:
    """The Sources bullet for replay rows (empty without them)."""
    if not replay:
        return ""
    families = ", ".join(name.replace("_", " ") for name in replay["by_family"])
    rows, share = replay["rows"], replay["share"]
    return f"""- **Replay** (format retention, `build_dataset.replay_share`): {rows:,} train
  rows ({share:.1%} of the training set), task `replay`: short-answer questions with
  no letter-level content and an explicit answer format (a number, yes/no, one word).
  Families: {families}. Their `answer` is empty here: the `train` stage fills it with the base
  model's own greedy answer, dropping empty, cut-off and letter-spelling answers. Checked by
  code: questions with letter-level content {replay["letter_content"]}, questions using a
  held-out word {replay["held_out_word_hits"]}. Only the train split has replay rows.
"""


def replay_fields(replay: dict | None) -> str:
    if not replay:
        return ""
    return "; replay rows carry only the user turn and leave `answer` and `expected` empty"


def dataset_card(params: Params, metrics: dict) -> str:
    from huggingface_hub import DatasetCard, DatasetCardData

    preset = resolve_preset(params.model)
    sizes = metrics["sizes"]
    total = sum(split["total"] for split in sizes.values())
    data = DatasetCardData(
        language=["en"],
        license=params.publish.license,
        pretty_name=f"letterwise spelling/position/count ({preset.name})",
        size_categories=[size_category(total)],
        task_categories=["text-generation"],
        tags=["spelling", "tokenization", "character-level", "letterwise"],
        source_datasets=["original"],
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"jsonl/{split}.jsonl"} for split in sizes],
            }
        ],
    )
    replay = metrics.get("replay")  # present only when build_dataset.replay_share > 0
    # The replay column appears only with replay rows, so a pure-spelling card is unchanged.
    columns = ("spelling", "position", "count") + (("replay",) if replay else ())
    header = f"| split | {' | '.join(columns)} | total |\n|---|" + "---:|" * (len(columns) + 1)
    rows = "\n".join(
        f"| {split} | " + "".join(f"{c.get(col, 0):,} | " for col in columns) + f"{c['total']:,} |"
        for split, c in sizes.items()
    )
    leak = metrics["leakage"]
    bd = params.build_dataset
    cap = "all" if bd.max_train_tokens is None else f"at most {bd.max_train_tokens:,}"
    body = f"""
# letterwise: spelling → letter position and count

Does an LLM fine-tuned **only to spell its own vocabulary tokens** get better at letter
**position** and **count** questions it never trained on? This dataset holds the training set
(spelling only) and the held-out evaluation sets for the tokenizer of `{preset.name}`.

## Sources and rules
- **Training strings**: the English-only subset of the tokenizer vocabulary
  ({metrics["token_subset_strings"]:,} distinct strings): tokens made only of ASCII letters once
  the leading-space marker is removed, at least {params.filter_tokens.min_length} letters, case and
  space variants merged into one lowercase string. This run uses {cap} of them
  ({metrics["training_strings"]:,}), {bd.examples_per_token} phrasing/answer-format pairs each.
- **Held-out words**: lowercase English words of {bd.min_word_length}–{bd.max_word_length} letters
  from the top {bd.word_pool:,} of `wordfreq`, kept only if the tokenizer splits them into at least
  two tokens with at least one multi-letter alphabetic token, and if they are not a training
  string (case-insensitive). Split into validation and test by word (seed {params.seed}).
- **Tasks**: `spelling` (letters separated by spaces), `position` (1-indexed "What is the 3rd
  letter of 'X'?", including "last letter"), `count` ("How many 'r's are in 'X'?", with
  {bd.count_absent_rate:.0%} of questions about absent letters, answer 0).
{replay_section(replay)}
## Splits
{header}
{rows}

## Leakage audit (checked by code on the written rows)
- held-out words: {leak["held_out_words"]:,}; among training strings: **{leak["leaked_words"]}**
- split into ≥ 2 tokens, one multi-letter alphabetic: **{leak["multi_token_share"]:.0%}**
- words in both validation and test: {leak["validation_test_overlap"]}
- mean tokens per held-out word: {leak["mean_tokens_per_word"]}

## Fields
`id`, `task`, `split`, `word`, `question`, `answer` (the ideal reply), `expected` (the normalised
key the parsers compare against), `phrasing`, `answer_format`, `position`, `is_last`, `letter`,
`count`, `word_length`, `freq_band` (wordfreq Zipf band: high ≥ 5, mid ≥ 4, low ≥ 3, rare),
`messages` (chat turns: user question, assistant answer{replay_fields(replay)}).

Built by the `build_dataset` stage of the letterwise DVC pipeline.
"""
    return str(DatasetCard.from_template(data, template_str="---\n{{ card_data }}\n---\n" + body))
