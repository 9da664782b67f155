"""Schemathesis hooks for the API fuzz test (loaded with SCHEMATHESIS_HOOKS=tests.serve_fuzz_hooks).

Generated bodies keep every field, type and value the schema allows, but batches are cut to
FUZZ_MAX_ITEMS questions and words to FUZZ_MAX_WORD letters: a valid request then generates in
about a second on qwen3-tiny on a CPU, instead of minutes for 32 items of 64-letter words. The
size limits themselves (64 letters, 32 items) are covered by tests/test_serve.py directly.
"""

from __future__ import annotations

from typing import Any

import schemathesis

FUZZ_MAX_ITEMS = 2
FUZZ_MAX_WORD = 6


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
