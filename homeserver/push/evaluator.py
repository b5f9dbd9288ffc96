"""Evaluating push rules against one event, for one user: pure, no I/O.

The caller gathers what the conditions need (room member count, the owner's display name,
the room's power levels) into a PushContext, so this module can be used from /sync's
unread counts and from pusher delivery alike, and tested with the spec's examples.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from homeserver.push.defaults import SHARED_EVENT_ONLY_RULES

# Historical actions that clients and servers must ignore (push.md "Historical Actions").
_IGNORED_ACTIONS = {"dont_notify", "coalesce"}
_MEMBER_COUNT = re.compile(r"(==|<=|>=|<|>)?([0-9]+)")
_WORD = "A-Za-z0-9_"
_WORD_CHARS = frozenset(string.ascii_letters + string.digits + "_")
_CANONICAL_INT = 2**53 - 1


@dataclass
class PushContext:
    user_id: str
    room_member_count: int = 0
    display_name: str | None = None
    # The room's m.room.power_levels content (None: the room has none).
    power_levels: dict | None = None
    # When the caller knows better than power_levels (e.g. v12 creators): the sender's level.
    sender_power_level: int | None = None
    extra: dict = field(default_factory=dict)


@lru_cache(maxsize=1024)
def split_path(key: str) -> tuple[str, ...]:
    """'content.m\\.relates_to.rel_type' -> ['content', 'm.relates_to', 'rel_type']."""
    parts, current, i = [], [], 0
    while i < len(key):
        ch = key[i]
        if ch == "\\" and i + 1 < len(key) and key[i + 1] in ".\\":
            current.append(key[i + 1])
            i += 2
            continue
        if ch == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return tuple(parts)


_ABSENT = object()


def lookup(event: dict, key: str) -> Any:
    value: Any = event
    for part in split_path(key):
        if not isinstance(value, dict) or part not in value:
            return _ABSENT
        value = value[part]
    return value


@lru_cache(maxsize=4096)
def _glob_regex(pattern: str, word_boundary: bool) -> re.Pattern:
    body = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    if word_boundary:
        body = f"(?<![{_WORD}]){body}(?![{_WORD}])"
        return re.compile(body, re.IGNORECASE | re.DOTALL)
    return re.compile(body, re.IGNORECASE | re.DOTALL)


def _contains_word(text: str, word: str) -> bool:
    """Case-insensitive `word` in `text`, not inside a longer word: the word-boundary
    match for a pattern without wildcards. Every user has their own name and localpart
    pattern, and compiling a regex for each cost a big room's fan-out a tenth of its CPU."""
    hay, needle = text.lower(), word.lower()
    start = hay.find(needle)
    while start != -1:
        end = start + len(needle)
        if (start == 0 or hay[start - 1] not in _WORD_CHARS) and (
            end == len(hay) or hay[end] not in _WORD_CHARS
        ):
            return True
        start = hay.find(needle, start + 1)
    return False


def glob_matches(pattern: str, value: str, *, word_boundary: bool = False) -> bool:
    if word_boundary and pattern and "*" not in pattern and "?" not in pattern:
        return _contains_word(value, pattern)
    regex = _glob_regex(pattern, word_boundary)
    return bool(regex.search(value) if word_boundary else regex.fullmatch(value))


def _is_simple(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool)):
        return True
    return isinstance(value, int) and -_CANONICAL_INT <= value <= _CANONICAL_INT


def _same_value(a: Any, b: Any) -> bool:
    # Python has True == 1; the spec forbids casting between booleans and integers.
    return type(a) is type(b) and a == b


def _event_match(cond: dict, event: dict) -> bool:
    key, pattern = cond.get("key"), cond.get("pattern")
    if not isinstance(key, str) or not isinstance(pattern, str):
        return False
    value = lookup(event, key)
    if not isinstance(value, str):
        return False
    return glob_matches(pattern, value, word_boundary=key == "content.body")


def _event_property_is(cond: dict, event: dict) -> bool:
    key, expected = cond.get("key"), cond.get("value", _ABSENT)
    if not isinstance(key, str) or expected is _ABSENT:
        return False
    value = lookup(event, key)
    return _is_simple(value) and _same_value(value, expected)


def _event_property_contains(cond: dict, event: dict) -> bool:
    key, expected = cond.get("key"), cond.get("value", _ABSENT)
    if not isinstance(key, str) or expected is _ABSENT:
        return False
    values = lookup(event, key)
    if not isinstance(values, list):
        return False
    return any(_is_simple(v) and _same_value(v, expected) for v in values)


def _contains_display_name(_cond: dict, event: dict, ctx: PushContext) -> bool:
    body = lookup(event, "content.body")
    if not ctx.display_name or not isinstance(body, str):
        return False
    return _contains_word(body, ctx.display_name)


def _room_member_count(cond: dict, ctx: PushContext) -> bool:
    spec = cond.get("is")
    m = _MEMBER_COUNT.fullmatch(spec) if isinstance(spec, str) else None
    if m is None:
        return False
    op, number = m.group(1) or "==", int(m.group(2))
    count = ctx.room_member_count
    return {
        "==": count == number,
        "<": count < number,
        ">": count > number,
        "<=": count <= number,
        ">=": count >= number,
    }[op]


def _as_int(value: Any, default: int) -> int:
    # Rooms before v10 may hold power levels as strings.
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return default
    return default


def _sender_notification_permission(cond: dict, event: dict, ctx: PushContext) -> bool:
    key = cond.get("key")
    if not isinstance(key, str):
        return False
    levels = ctx.power_levels if isinstance(ctx.power_levels, dict) else {}
    notifications = levels.get("notifications")
    notifications = notifications if isinstance(notifications, dict) else {}
    required = _as_int(notifications.get(key), 50)
    if ctx.sender_power_level is not None:
        sender_level = ctx.sender_power_level
    else:
        users = _as_dict(levels.get("users"))
        default = _as_int(levels.get("users_default"), 0)
        sender_level = _as_int(users.get(event.get("sender")), default)
    return sender_level >= required


def condition_matches(cond: Any, event: dict, ctx: PushContext) -> bool:
    if not isinstance(cond, dict):
        return False
    kind = cond.get("kind")
    if kind == "event_match":
        return _event_match(cond, event)
    if kind == "event_property_is":
        return _event_property_is(cond, event)
    if kind == "event_property_contains":
        return _event_property_contains(cond, event)
    if kind == "contains_display_name":
        return _contains_display_name(cond, event, ctx)
    if kind == "room_member_count":
        return _room_member_count(cond, ctx)
    if kind == "sender_notification_permission":
        return _sender_notification_permission(cond, event, ctx)
    # Unrecognised conditions never match (which disables the rule).
    return False


def rule_matches(kind: str, rule: dict, event: dict, ctx: PushContext) -> bool:
    if not rule.get("enabled", True):
        return False
    if kind == "room":
        return event.get("room_id") == rule["rule_id"]
    if kind == "sender":
        return event.get("sender") == rule["rule_id"]
    if kind == "content":
        pattern = rule.get("pattern")
        body = lookup(event, "content.body")
        return (
            isinstance(pattern, str)
            and isinstance(body, str)
            and glob_matches(pattern, body, word_boundary=True)
        )
    return all(condition_matches(c, event, ctx) for c in rule.get("conditions") or [])


def clean_actions(actions: list) -> list:
    return [a for a in actions if not (isinstance(a, str) and a in _IGNORED_ACTIONS)]


def evaluate(
    ranked_rules: list[tuple[str, dict]],
    event: dict,
    ctx: PushContext,
    memo: dict[int, bool] | None = None,
) -> list | None:
    """The actions of the first matching rule, or None when no rule matches.

    `ranked_rules` is every rule in priority order (see homeserver.push.rules.ranked). A
    user is never notified of their own events. `memo`, one per event, shared by every
    user's evaluation of it, keeps the verdicts of the shared default rules that depend
    on the event alone.
    """
    if event.get("sender") == ctx.user_id:
        return None
    for kind, rule in ranked_rules:
        if memo is not None and id(rule) in SHARED_EVENT_ONLY_RULES:
            matched = memo.get(id(rule))
            if matched is None:
                matched = memo[id(rule)] = rule_matches(kind, rule, event, ctx)
        else:
            matched = rule_matches(kind, rule, event, ctx)
        if matched:
            return clean_actions(rule.get("actions") or [])
    return None


def notifies(actions: list | None) -> bool:
    return bool(actions) and "notify" in (actions or ())


def highlights(actions: list | None) -> bool:
    for action in actions or []:
        if isinstance(action, dict) and action.get("set_tweak") == "highlight":
            return action.get("value", True) is True
    return False


def _as_dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}
