"""The MSC4186 request body, validated before anything is read or written.

Unknown fields are ignored (clients send newer ones); a field of the wrong type, a
reversed or negative range, or a malformed required_state entry answers 400 M_BAD_JSON.
Out-of-range sizes are clamped: a range past the list's end shows what exists, and a
timeline_limit over MAX_TIMELINE_LIMIT is read as MAX_TIMELINE_LIMIT.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import orjson

from homeserver.http.errors import bad_json
from homeserver.jsonutil import canonical_str

MAX_TIMELINE_LIMIT = 1000
MAX_LISTS = 100
MAX_RANGES = 100
MAX_SUBSCRIPTIONS = 1000
MAX_REQUIRED_STATE = 1000
MAX_CONN_ID = 255
# Positions past the end of any real list: larger range ends are read as this.
MAX_INDEX = 1 << 31

WILDCARD = "*"
LAZY = "$LAZY"
ME = "$ME"
EXTENSIONS = ("to_device", "e2ee", "account_data", "receipts", "typing")


@dataclass(frozen=True)
class RoomConfig:
    """What to send of a room: a room in several lists and subscriptions gets the union."""

    required_state: frozenset[tuple[str, str]] = frozenset()
    timeline_limit: int = 0

    def merge(self, other: RoomConfig) -> RoomConfig:
        return RoomConfig(
            self.required_state | other.required_state,
            max(self.timeline_limit, other.timeline_limit),
        )

    def key(self) -> str:
        """Compared with what a connection sent a room with, to see whether it changed."""
        return canonical_str(
            {"rs": sorted(list(p) for p in self.required_state), "tl": self.timeline_limit}
        )

    def expands(self, sent_key: str) -> bool:
        """Whether this asks for state that a room sent with config `sent_key` lacks (a
        smaller config sends nothing: the client has more than it asks for)."""
        return not self.required_state <= _sent_required_state(sent_key)

    def wants(self, etype: str, state_key: str, user_id: str) -> bool:
        """Whether the state entry is asked for, $LAZY members aside."""
        for t, sk in self.required_state:
            if t != WILDCARD and t != etype:
                continue
            if sk == WILDCARD or sk == state_key or (sk == ME and state_key == user_id):
                return True
        return False

    @property
    def lazy_members(self) -> bool:
        return ("m.room.member", LAZY) in self.required_state


@functools.lru_cache(maxsize=1024)
def _sent_required_state(sent_key: str) -> frozenset[tuple[str, str]]:
    # A connection's rooms share a handful of configs: parse each once.
    return frozenset((t, sk) for t, sk in orjson.loads(sent_key)["rs"])


@dataclass
class Filters:
    is_dm: bool | None = None
    is_encrypted: bool | None = None
    is_invite: bool | None = None
    room_types: list[str | None] | None = None
    not_room_types: list[str | None] = field(default_factory=list)
    spaces: list[str] | None = None
    tags: list[str] | None = None
    not_tags: list[str] = field(default_factory=list)
    room_name_like: str | None = None


@dataclass
class ListConfig:
    ranges: list[tuple[int, int]] | None
    room: RoomConfig
    filters: Filters


@dataclass
class Extension:
    enabled: bool
    lists: list[str]
    rooms: list[str]
    since: int | None = None


@dataclass
class SlidingSyncRequest:
    conn_id: str
    lists: dict[str, ListConfig]
    subscriptions: dict[str, RoomConfig]
    extensions: dict[str, Extension]


def _get(obj: dict, name: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise bad_json(f"{where}.{name} has the wrong type")
    return value


def _strings(value: Any, where: str, nullable: bool = False) -> list:
    if not isinstance(value, list) or not all(
        isinstance(v, str) or (nullable and v is None) for v in value
    ):
        raise bad_json(f"{where} must be a list of strings")
    return value


def _room_config(obj: dict, where: str) -> RoomConfig:
    required = _get(obj, "required_state", list, where) or []
    if len(required) > MAX_REQUIRED_STATE:
        raise bad_json(f"{where}.required_state has too many entries")
    pairs = set()
    for entry in required:
        if (
            not isinstance(entry, list)
            or len(entry) != 2
            or not all(isinstance(v, str) for v in entry)
        ):
            raise bad_json(f"{where}.required_state entries are [type, state_key] pairs")
        pairs.add((entry[0], entry[1]))
    limit = _get(obj, "timeline_limit", int, where) or 0
    if limit < 0:
        raise bad_json(f"{where}.timeline_limit must not be negative")
    return RoomConfig(frozenset(pairs), min(limit, MAX_TIMELINE_LIMIT))


def _ranges(value: Any, where: str) -> list[tuple[int, int]] | None:
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_RANGES:
        raise bad_json(f"{where}.ranges must be a list of at most {MAX_RANGES} ranges")
    out = []
    for r in value:
        if (
            not isinstance(r, list)
            or len(r) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in r)
        ):
            raise bad_json(f"{where}.ranges entries are [start, end] integer pairs")
        start, end = r
        if start < 0 or end < start:
            raise bad_json(f"{where}.ranges: need 0 <= start <= end")
        out.append((min(start, MAX_INDEX), min(end, MAX_INDEX)))
    return out


def _filters(obj: dict | None, where: str) -> Filters:
    if obj is None:
        return Filters()
    f = Filters()
    for name in ("is_dm", "is_encrypted", "is_invite"):
        setattr(f, name, _get(obj, name, bool, where))
    if obj.get("room_types") is not None:
        f.room_types = _strings(obj["room_types"], f"{where}.room_types", nullable=True)
    if obj.get("not_room_types") is not None:
        f.not_room_types = _strings(obj["not_room_types"], f"{where}.not_room_types", True)
    if obj.get("spaces") is not None:
        f.spaces = _strings(obj["spaces"], f"{where}.spaces")
    if obj.get("tags") is not None:
        f.tags = _strings(obj["tags"], f"{where}.tags")
    if obj.get("not_tags") is not None:
        f.not_tags = _strings(obj["not_tags"], f"{where}.not_tags")
    f.room_name_like = _get(obj, "room_name_like", str, where)
    return f


def _extension(name: str, obj: Any) -> Extension:
    where = f"extensions.{name}"
    if not isinstance(obj, dict):
        raise bad_json(f"{where} must be an object")
    lists = obj.get("lists")
    rooms = obj.get("rooms")
    since = None
    if name == "to_device":
        raw = _get(obj, "since", str, where)
        if raw is not None:
            if not raw.isdigit() or len(raw) > 18:
                raise bad_json(f"{where}.since is not a token of ours")
            since = int(raw)
    return Extension(
        enabled=bool(_get(obj, "enabled", bool, where)),
        lists=[WILDCARD] if lists is None else _strings(lists, f"{where}.lists"),
        rooms=[WILDCARD] if rooms is None else _strings(rooms, f"{where}.rooms"),
        since=since,
    )


def parse_request(body: Any) -> SlidingSyncRequest:
    if not isinstance(body, dict):
        raise bad_json("The body must be a JSON object")
    conn_id = _get(body, "conn_id", str, "body") or ""
    if len(conn_id) > MAX_CONN_ID:
        raise bad_json(f"conn_id is longer than {MAX_CONN_ID} characters")
    lists: dict[str, ListConfig] = {}
    raw_lists = _get(body, "lists", dict, "body") or {}
    if len(raw_lists) > MAX_LISTS:
        raise bad_json(f"At most {MAX_LISTS} lists")
    for name, obj in raw_lists.items():
        where = f"lists.{name}"
        if not isinstance(obj, dict):
            raise bad_json(f"{where} must be an object")
        lists[name] = ListConfig(
            ranges=_ranges(obj.get("ranges"), where),
            room=_room_config(obj, where),
            filters=_filters(_get(obj, "filters", dict, where), f"{where}.filters"),
        )
    subscriptions: dict[str, RoomConfig] = {}
    raw_subs = _get(body, "room_subscriptions", dict, "body") or {}
    if len(raw_subs) > MAX_SUBSCRIPTIONS:
        raise bad_json(f"At most {MAX_SUBSCRIPTIONS} room subscriptions")
    for room_id, obj in raw_subs.items():
        where = f"room_subscriptions.{room_id}"
        if not room_id.startswith("!") or not isinstance(obj, dict):
            raise bad_json(f"{where} must be a room ID mapped to an object")
        subscriptions[room_id] = _room_config(obj, where)
    extensions: dict[str, Extension] = {}
    raw_ext = _get(body, "extensions", dict, "body") or {}
    for name in EXTENSIONS:
        if name in raw_ext:
            ext = _extension(name, raw_ext[name])
            if ext.enabled:
                extensions[name] = ext
    return SlidingSyncRequest(conn_id, lists, subscriptions, extensions)
