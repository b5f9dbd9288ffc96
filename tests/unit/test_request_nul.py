"""U+0000 detection in parsed JSON: strings and keys at any depth, without recursion."""

from __future__ import annotations

import orjson

from homeserver.http.request import contains_nul


def test_strings_keys_and_lists():
    assert not contains_nul({"a": ["b", {"c": 1, "d": None, "e": True}]})
    assert contains_nul({"a": ["b", {"c": "x\u0000"}]})
    assert contains_nul({"a": [{"k\u0000": 1}]})
    assert contains_nul("\u0000")
    # A backslash followed by "u0000" is six characters, not U+0000.
    assert not contains_nul(orjson.loads(b'{"a": "\\\\u0000"}'))


def test_nesting_deeper_than_the_recursion_limit():
    depth = 1000  # orjson parses up to 1024 levels; Python recurses to ~1000
    deep = orjson.loads(b"[" * depth + b'"\\u0000"' + b"]" * depth)
    assert contains_nul(deep)
