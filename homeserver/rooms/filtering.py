"""Event filters (spec: "Filtering"), applied to /messages, /context and /sync."""

from __future__ import annotations

import fnmatch
from typing import Any

from storage.events import StoredEvent


def _matches_any(value: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(value, p) if "*" in p else value == p for p in patterns)


class EventFilter:
    def __init__(self, spec: dict[str, Any] | None):
        spec = spec if isinstance(spec, dict) else {}
        self.spec = spec
        self.limit: int | None = spec.get("limit") if isinstance(spec.get("limit"), int) else None
        self.types = _str_list(spec.get("types"))
        self.not_types = _str_list(spec.get("not_types")) or []
        self.senders = _str_list(spec.get("senders"))
        self.not_senders = _str_list(spec.get("not_senders")) or []
        self.rooms = _str_list(spec.get("rooms"))
        self.not_rooms = _str_list(spec.get("not_rooms")) or []
        self.contains_url = spec.get("contains_url")
        self.lazy_load_members = bool(spec.get("lazy_load_members"))
        self.include_redundant_members = bool(spec.get("include_redundant_members"))

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
        self.lazy_load_members = self.state.lazy_load_members
