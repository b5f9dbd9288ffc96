"""What an event must be before it may join a group-commit batch.

A value PostgreSQL refuses fails the whole transaction, and with it every other event of
the batch: so each event is checked here first, local ones when they are built and
remote ones when their PDU is parsed. Two things are checked:

- the values written to text columns of their own (IDs, type, state key, membership)
  hold no U+0000, which text cannot store (the event's JSON text escapes it);
- canonical JSON (spec: "Canonical JSON"; room versions 6 and later make an event that
  breaks it invalid): integers within ±(2**53 - 1), no floats. orjson reads an integer
  beyond 64 bits as a float, so 2**64 is refused here rather than stored as 1.8e19.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

CANONICAL_INT_MAX = 2**53 - 1


def canonical_json_problem(value: Any) -> str | None:
    """Where `value` breaks canonical JSON's number rules, or None. Iterative: orjson
    parses nesting deeper than Python's recursion limit."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, float):
            return f"non-integer number at {where or 'top level'}"
        if (
            isinstance(item, int)
            and not isinstance(item, bool)
            and not -CANONICAL_INT_MAX <= item <= CANONICAL_INT_MAX
        ):
            return f"integer out of range at {where or 'top level'}"
        if isinstance(item, dict):
            stack.extend((v, f"{where}.{k}" if where else k) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
    return None


def column_values(event: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """The values of an event that storage writes to their own text columns (events,
    current_state, redactions, room_forward_extremities, event_outliers): everything else
    is kept only in the event's canonical JSON text, where U+0000 is escaped. Tolerant of
    any shape: a malformed field is for the caller to refuse."""
    for key in ("event_id", "room_id", "sender", "type", "state_key", "origin", "redacts"):
        yield key, event.get(key)
    content = event.get("content")
    if isinstance(content, dict):
        yield "content.membership", content.get("membership")
        yield "content.redacts", content.get("redacts")
    for key in ("prev_events", "auth_events"):
        refs = event.get(key)
        for ref in refs if isinstance(refs, list) else ():
            # v1/v2: [event_id, hashes] pairs; from v3 on, event ids.
            yield key, ref[0] if isinstance(ref, list) and ref else ref


def nul_column_problem(event: dict[str, Any]) -> str | None:
    """The first column value of `event` holding U+0000, as a message, or None."""
    for name, value in column_values(event):
        if isinstance(value, str) and "\x00" in value:
            return f"{name} contains U+0000"
    return None
