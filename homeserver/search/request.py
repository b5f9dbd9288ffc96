"""The body of POST /search (room_events criteria) and its next_batch token, checked before
anything is read: a wrong type is M_BAD_JSON, a value outside the spec's enums or a token
not ours is M_INVALID_PARAM."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

from homeserver.http.errors import bad_json, invalid_param
from homeserver.rooms.filtering import EventFilter, check_event_filter
from storage.search import SEARCH_KEYS

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
DEFAULT_CONTEXT = 5
MAX_CONTEXT = 100
ORDERS = ("rank", "recent")
GROUP_KEYS = ("room_id", "sender")


@dataclass(frozen=True, slots=True)
class Criteria:
    term: str
    keys: tuple[str, ...]
    event_filter: EventFilter
    limit: int
    by_rank: bool
    # None: no event_context asked.
    context: tuple[int, int, bool] | None
    include_state: bool
    group_by: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: the (rank, stream ordering) of its last match, the order it was
    in, and, for a group's next_batch, the group (key, value) it is restricted to."""

    by_rank: bool
    rank: float
    ordering: int
    group: tuple[str, str] | None = None

    def encode(self) -> str:
        data: dict[str, Any] = {"o": "rank" if self.by_rank else "recent", "s": self.ordering}
        if self.by_rank:
            data["r"] = self.rank
        if self.group is not None:
            data["g"] = list(self.group)
        return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")

    @staticmethod
    def decode(token: str) -> Cursor:
        try:
            data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        except (binascii.Error, ValueError):
            raise invalid_param("Unknown 'next_batch' token") from None
        if not isinstance(data, dict):
            raise invalid_param("Unknown 'next_batch' token")
        order, ordering, rank, group = (
            data.get("o"),
            data.get("s"),
            data.get("r", 0.0),
            data.get("g"),
        )
        if (
            order not in ORDERS
            or not isinstance(ordering, int)
            or isinstance(ordering, bool)
            or not isinstance(rank, int | float)
            or isinstance(rank, bool)
            or not -(2**63) <= ordering < 2**63
        ):
            raise invalid_param("Unknown 'next_batch' token")
        if group is not None and not (
            isinstance(group, list)
            and len(group) == 2
            and group[0] in GROUP_KEYS
            and isinstance(group[1], str)
        ):
            raise invalid_param("Unknown 'next_batch' token")
        return Cursor(order == "rank", float(rank), ordering, tuple(group) if group else None)


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_json(f"'{where}' must be an object")
    return value


def _bool(value: Any, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_json(f"'{where}' must be true or false")
    return value


def _count(value: Any, where: str) -> int:
    if value is None:
        return DEFAULT_CONTEXT
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad_json(f"'{where}' must be a non-negative integer")
    return min(value, MAX_CONTEXT)


def _keys(value: Any) -> tuple[str, ...]:
    if value is None:
        return SEARCH_KEYS
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise bad_json("'keys' must be a list of strings")
    unknown = [k for k in value if k not in SEARCH_KEYS]
    if unknown:
        raise invalid_param(f"Unknown search key {unknown[0]!r}")
    return tuple(dict.fromkeys(value)) or SEARCH_KEYS


def _context(value: Any) -> tuple[int, int, bool] | None:
    if value is None:
        return None
    ctx = _object(value, "event_context")
    return (
        _count(ctx.get("before_limit"), "event_context.before_limit"),
        _count(ctx.get("after_limit"), "event_context.after_limit"),
        _bool(ctx.get("include_profile"), "event_context.include_profile"),
    )


def _group_by(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    groupings = _object(value, "groupings")
    groups = groupings.get("group_by")
    if groups is None:
        return ()
    if not isinstance(groups, list):
        raise bad_json("'groupings.group_by' must be a list")
    keys = []
    for g in groups:
        key = _object(g, "groupings.group_by[]").get("key")
        if not isinstance(key, str):
            raise bad_json("'groupings.group_by[].key' must be a string")
        if key not in GROUP_KEYS:
            raise invalid_param(f"Unknown group key {key!r}")
        keys.append(key)
    return tuple(dict.fromkeys(keys))


def parse_room_events(value: Any) -> Criteria:
    """The room_events criteria of a search request."""
    criteria = _object(value, "search_categories.room_events")
    term = criteria.get("search_term")
    if not isinstance(term, str):
        raise bad_json("'search_term' is required and must be a string")
    order = criteria.get("order_by", "rank")
    if order is None:
        order = "rank"
    if not isinstance(order, str):
        raise bad_json("'order_by' must be a string")
    if order not in ORDERS:
        raise invalid_param("'order_by' must be 'rank' or 'recent'")
    spec = criteria.get("filter")
    if spec is not None:
        check_event_filter(spec, "filter", room_event=True)
    event_filter = EventFilter(spec)
    limit = event_filter.limit
    return Criteria(
        term=term,
        keys=_keys(criteria.get("keys")),
        event_filter=event_filter,
        limit=DEFAULT_LIMIT if not limit else min(limit, MAX_LIMIT),
        by_rank=order == "rank",
        context=_context(criteria.get("event_context")),
        include_state=_bool(criteria.get("include_state"), "include_state"),
        group_by=_group_by(criteria.get("groupings")),
    )
