"""Event filters (spec: "Filtering"), applied to /messages, /context and /sync.

Filters are checked against the spec's schemas (`Filter`, `EventFilter`,
`RoomEventFilter`) where they come in: uploaded (POST /user/{userId}/filter), inline in
/sync's `filter`, or in /messages' and /context's `filter`. Unknown keys are allowed
(forward compatibility); known keys must have their type. A stored filter is read back
tolerantly (`SyncFilter`), so one stored before these checks still works.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from homeserver.http.errors import MatrixError, bad_json, invalid_param, not_found
from homeserver.http.request import contains_nul, parse_int64
from homeserver.jsonutil import loads
from storage.events import StoredEvent
from storage.filters import FilterStore
from storage.streams import STREAMS

# A client may ask for any limit; this is the most any filter returns at once.
MAX_FILTER_LIMIT = 1000

_EVENT_FILTER_LISTS = ("types", "not_types", "senders", "not_senders")
_ROOM_FILTER_LISTS = ("rooms", "not_rooms")
_ROOM_EVENT_FILTER_BOOLS = (
    "contains_url",
    "lazy_load_members",
    "include_redundant_members",
    "unread_thread_notifications",
)
_ROOM_EVENT_FILTERS = ("timeline", "state", "ephemeral", "account_data")


# Lists of IDs: each entry must at least carry its sigil (Synapse parses them too).
_ID_SIGILS = {"rooms": "!", "not_rooms": "!", "senders": "@", "not_senders": "@"}


def _check_string_list(value: Any, where: str) -> None:
    if value is not None and not (
        isinstance(value, list) and all(isinstance(i, str) for i in value)
    ):
        raise bad_json(f"'{where}' must be a list of strings")
    sigil = _ID_SIGILS.get(where.rsplit(".", 1)[-1])
    # Room IDs of room version 12 on have no server part: only user IDs need a ':'.
    if (
        value
        and sigil is not None
        and not all(i.startswith(sigil) and (sigil == "!" or ":" in i) for i in value)
    ):
        kind = "room" if sigil == "!" else "user"
        raise bad_json(f"'{where}' must list {kind} IDs")


def _check_bool(value: Any, where: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise bad_json(f"'{where}' must be true or false")


def check_event_filter(value: Any, where: str, room_event: bool = False) -> None:
    """An EventFilter (or, `room_event`, a RoomEventFilter) as the spec gives it:
    M_BAD_JSON naming the first field that is wrong."""
    if not isinstance(value, dict):
        raise bad_json(f"'{where}' must be an object")
    lists = _EVENT_FILTER_LISTS + (_ROOM_FILTER_LISTS if room_event else ())
    for key in lists:
        _check_string_list(value.get(key), f"{where}.{key}")
    limit = value.get("limit")
    # 0 is below the spec's minimum of 1 but was always accepted (no events); kept so
    # that a client which sends it keeps working.
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= 2**63 - 1
    ):
        raise bad_json(f"'{where}.limit' must be a non-negative integer")
    if room_event:
        for key in _ROOM_EVENT_FILTER_BOOLS:
            _check_bool(value.get(key), f"{where}.{key}")


def check_filter(body: Any) -> None:
    """A whole Filter (uploaded, or inline in /sync)."""
    if not isinstance(body, dict):
        raise bad_json("A filter must be a JSON object")
    _check_string_list(body.get("event_fields"), "event_fields")
    if body.get("event_format", "client") not in ("client", "federation"):
        raise bad_json("'event_format' must be 'client' or 'federation'")
    for name in ("presence", "account_data"):
        if name in body:
            check_event_filter(body[name], name)
    room = body.get("room")
    if room is None:
        return
    if not isinstance(room, dict):
        raise bad_json("'room' must be an object")
    for key in _ROOM_FILTER_LISTS:
        _check_string_list(room.get(key), f"room.{key}")
    _check_bool(room.get("include_leave"), "room.include_leave")
    for name in _ROOM_EVENT_FILTERS:
        if name in room:
            check_event_filter(room[name], f"room.{name}", room_event=True)


def _inline_json(value: str, name: str) -> Any:
    try:
        spec = loads(value)
    except ValueError:
        raise invalid_param(f"'{name}' is not valid JSON") from None
    if contains_nul(spec):
        raise invalid_param(f"'{name}' must not contain U+0000")
    return spec


def room_event_filter(value: str | None) -> EventFilter:
    """The `filter` query parameter of /messages and /context: a RoomEventFilter."""
    if value is None:
        return EventFilter(None)
    spec = _inline_json(value, "filter")
    check_event_filter(spec, "filter", room_event=True)
    return EventFilter(spec)


async def load_filter(
    filters: FilterStore, user_id: str, value: str | None, *, inline: bool = True
) -> dict[str, Any]:
    """The filter `value` names: a filter ID of `user_id`'s (M_NOT_FOUND if there is no
    such filter), or with `inline` (/sync's `filter`) a Filter as JSON, checked."""
    if not value:
        return {}
    if inline and _is_inline(value):
        return _parse_inline(value)
    return _parse_stored(await _stored_text(filters, user_id, _filter_id(value)))


def _is_inline(value: str) -> bool:
    return value.lstrip().startswith("{")


def _parse_inline(value: str) -> dict[str, Any]:
    spec = _inline_json(value, "filter")
    check_filter(spec)
    return spec


def _filter_id(value: str) -> int:
    filter_id = parse_int64(value)
    # IDs are the numbers this server hands out; anything else names no filter.
    if filter_id is None or filter_id <= 0:
        raise not_found("Unknown filter")
    return filter_id


async def _stored_text(filters: FilterStore, user_id: str, filter_id: int) -> str:
    stored = await filters.get(user_id, filter_id)
    if stored is None:
        raise not_found("Unknown filter")
    return stored


def _parse_stored(stored: str) -> dict[str, Any]:
    spec = loads(stored)
    if not isinstance(spec, dict):
        raise MatrixError(500, "M_UNKNOWN", "Stored filter is not an object")
    return spec


def _matches_any(value: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) if "*" in p else value == p for p in patterns)


class EventFilter:
    def __init__(self, spec: dict[str, Any] | None):
        spec = spec if isinstance(spec, dict) else {}
        self.spec = spec
        limit = spec.get("limit")
        self.limit: int | None = (
            max(0, min(limit, MAX_FILTER_LIMIT))
            if isinstance(limit, int) and not isinstance(limit, bool)
            else None
        )
        self.types = _str_list(spec.get("types"))
        self.not_types = _str_list(spec.get("not_types")) or []
        self.senders = _str_list(spec.get("senders"))
        self.not_senders = _str_list(spec.get("not_senders")) or []
        self.rooms = _str_list(spec.get("rooms"))
        self.not_rooms = _str_list(spec.get("not_rooms")) or []
        self.contains_url = spec.get("contains_url")
        self.lazy_load_members = bool(spec.get("lazy_load_members"))
        self.include_redundant_members = bool(spec.get("include_redundant_members"))
        self.unread_thread_notifications = spec.get("unread_thread_notifications") is True

    def selects_events(self) -> bool:
        """Whether the filter may drop some events of a room (by type, sender or URL)."""
        return bool(
            self.types is not None
            or self.not_types
            or self.senders is not None
            or self.not_senders
            or self.contains_url is not None
        )

    def allows_room(self, room_id: str) -> bool:
        if room_id in self.not_rooms:
            return False
        return self.rooms is None or room_id in self.rooms

    def allows(self, ev: StoredEvent) -> bool:
        return self.allows_dict(ev.type, ev.sender, ev.room_id, ev.content)

    def allows_dict(
        self, etype: str, sender: str | None, room_id: str | None, content: dict[str, Any] | None
    ) -> bool:
        if self.not_types and _matches_any(etype, self.not_types):
            return False
        if self.types is not None and not _matches_any(etype, self.types):
            return False
        if sender is not None:
            if sender in self.not_senders:
                return False
            if self.senders is not None and sender not in self.senders:
                return False
        if room_id is not None and not self.allows_room(room_id):
            return False
        if self.contains_url is not None:
            has_url = isinstance((content or {}).get("url"), str)
            if has_url != bool(self.contains_url):
                return False
        return True

    def apply(self, events: list[StoredEvent]) -> list[StoredEvent]:
        return [e for e in events if self.allows(e)]

    def allows_none(self) -> bool:
        """Whether no event can pass (`"types": []` is how clients turn a section off)."""
        return self.types == [] or "*" in self.not_types or self.limit == 0


def _str_list(value: Any) -> list[str] | None:
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return None


class SyncFilter:
    """A whole filter as uploaded by clients, with defaults for every missing part."""

    def __init__(self, spec: dict[str, Any] | None):
        spec = spec if isinstance(spec, dict) else {}
        room_value = spec.get("room")
        room: dict[str, Any] = room_value if isinstance(room_value, dict) else {}
        self.spec = spec
        self.rooms = EventFilter({k: room[k] for k in ("rooms", "not_rooms") if k in room})
        self.timeline = EventFilter(room.get("timeline"))
        self.state = EventFilter(room.get("state"))
        self.ephemeral = EventFilter(room.get("ephemeral"))
        self.room_account_data = EventFilter(room.get("account_data"))
        self.include_leave = bool(room.get("include_leave"))
        self.presence = EventFilter(spec.get("presence"))
        self.account_data = EventFilter(spec.get("account_data"))
        self.event_fields = spec.get("event_fields")
        self.event_format = spec.get("event_format", "client")
        self.lazy_load_members = self.state.lazy_load_members
        # Counts per thread in /sync (spec: "Receiving notifications"), asked in the timeline.
        self.unread_thread_notifications = self.timeline.unread_thread_notifications
        # The streams whose changes can show in this filter's answers (None: all). A
        # long-poll sleeps through the others: in a room of 10,000, each member coming
        # online would otherwise wake every other member's poll for nothing.
        self.wake_streams: frozenset[str] | None = (
            frozenset(STREAMS) - {"presence"} if self.presence.allows_none() else None
        )


ParsedFilter = tuple[dict[str, Any], SyncFilter]


class SyncFilters:
    """/sync's filters, parsed once and shared by every poll that names the same text.

    Each poll names its filter, and Element uploads the same filter for every user: ten
    thousand parked polls hold one parsed filter, not ten thousand. Bounded by count and
    size, since inline filters are whatever a client sends: at most `TEXTS` parsed texts
    of at most `MAX_TEXT` characters (longer ones are parsed per poll), and `IDS`
    (user, filter ID) -> digest entries, so a known ID costs no database read. Stored
    filters never change (the spec has no call to change one).
    """

    TEXTS = 1_024
    MAX_TEXT = 8_192
    IDS = 100_000

    def __init__(self, store: FilterStore):
        self.store = store
        self._parsed: OrderedDict[bytes, ParsedFilter] = OrderedDict()
        self._ids: OrderedDict[tuple[str, int], bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._parsed)

    async def get(self, user_id: str, value: str | None) -> ParsedFilter:
        if not value:
            return self._shared("", dict)
        if _is_inline(value):
            return self._shared(value, lambda: _parse_inline(value))
        id_key = (user_id, _filter_id(value))
        digest = self._ids.get(id_key)
        if digest is not None and digest in self._parsed:
            self._ids.move_to_end(id_key)
            self._parsed.move_to_end(digest)
            return self._parsed[digest]
        text = await _stored_text(self.store, user_id, id_key[1])
        parsed = self._shared(text, lambda: _parse_stored(text))
        if len(text) <= self.MAX_TEXT:
            self._ids[id_key] = _digest(text)
            self._ids.move_to_end(id_key)
            if len(self._ids) > self.IDS:
                self._ids.popitem(last=False)
        return parsed

    def _shared(self, text: str, parse: Callable[[], dict[str, Any]]) -> ParsedFilter:
        if len(text) > self.MAX_TEXT:
            spec = parse()
            return spec, SyncFilter(spec)
        digest = _digest(text)
        known = self._parsed.get(digest)
        if known is not None:
            self._parsed.move_to_end(digest)
            return known
        spec = parse()
        parsed = self._parsed[digest] = (spec, SyncFilter(spec))
        if len(self._parsed) > self.TEXTS:
            self._parsed.popitem(last=False)
        return parsed


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()
