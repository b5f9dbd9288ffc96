"""What one /sync computation knows, shared by its stream providers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from homeserver.rooms.filtering import SyncFilter


@dataclass
class SyncContext:
    user_id: str
    device_id: str
    since: dict[str, int] | None
    now: dict[str, int]
    full_state: bool
    filter: dict[str, Any]
    sync_filter: SyncFilter
    joined_room_ids: set[str] = field(default_factory=set)
    newly_joined_room_ids: set[str] = field(default_factory=set)
    newly_left_room_ids: set[str] = field(default_factory=set)
    # The users the syncing user ignores (m.ignored_user_list), read once per sync.
    ignored: frozenset[str] = frozenset()
    # (user_id, membership) of the member events since the token in the joined rooms,
    # read once per sync by streams/base.room_member_changes (presence, device lists).
    member_changes: list[tuple[str, str]] | None = None

    @property
    def initial(self) -> bool:
        return self.since is None
