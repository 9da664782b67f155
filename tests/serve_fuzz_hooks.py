"""Schemathesis hooks for the API fuzz test (loaded with SCHEMATHESIS_HOOKS=tests.serve_fuzz_hooks).

Generated bodies keep every field, type and value the schema allows, but batches are cut to
FUZZ_MAX_ITEMS questions and words to FUZZ_MAX_WORD letters: a valid request then generates in
about a second on qwen3-tiny on a CPU, instead of minutes for 32 items of 64-letter words. The
size limits themselves (64 letters, 32 items) are covered by tests/test_serve.py directly.

Valid (positive) bodies must be accepted (the positive_data_acceptance check), so they also
keep the rules a JSON schema cannot state: integers are written as JSON integers (JSON Schema
counts 61.0 as an integer; the API's types are strict, docs/api.md), `index` is at most the
word's length (an index past a shortened word becomes its LAST letter, a boundary worth asking
about often) and greedy decoding takes no sampling settings. Negative bodies stay as generated.
"""

from __future__ import annotations

from typing import Any

import schemathesis

FUZZ_MAX_ITEMS = 2
FUZZ_MAX_WORD = 6
SAMPLING_KNOBS = ("temperature", "top_p", "top_k", "min_p")
INTEGER_FIELDS = ("index", "seed", "top_k")


def _shorten(entry: Any) -> Any:
    if not isinstance(entry, dict):
        return entry
    entry = dict(entry)
    word = entry.get("word")
    if isinstance(word, str) and len(word) > FUZZ_MAX_WORD:
        entry["word"] = word[:FUZZ_MAX_WORD]
    return entry


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    items = body.get("items")
    if isinstance(items, list):
        body = {**body, "items": [_shorten(item) for item in items[:FUZZ_MAX_ITEMS]]}
    return _shorten(body)


def _valid_entry(entry: Any) -> Any:
    """Integral floats as integers, and `index` within the word."""
    if not isinstance(entry, dict):
        return entry
    entry = {
        key: int(value)
        if key in INTEGER_FIELDS and isinstance(value, float) and value.is_integer()
        else value
        for key, value in entry.items()
    }
    word, index = entry.get("word"), entry.get("index")
    if isinstance(word, str) and isinstance(index, int) and index > len(word):
        return {**entry, "index": len(word)}
    return entry


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    meta = case.meta
    body = case.body
    if meta is None or not meta.generation.mode.is_positive or not isinstance(body, dict):
        return case
    if isinstance(body.get("items"), list):
        body = {**body, "items": [_valid_entry(item) for item in body["items"]]}
    body = _valid_entry(body)
    if body.get("decoding") == "greedy":
        body = {key: value for key, value in body.items() if key not in SAMPLING_KNOBS}
    case.body = body
    return case
