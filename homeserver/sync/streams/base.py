"""The interface every /sync stream provider implements.

A provider owns one kind of change a client syncs on (room events, typing, receipts,
to-device, account data, presence, device lists), reads it through its stores, and
writes its section of the response. Providers run in registration order
(homeserver/sync/streams/__init__.py): the rooms provider first, because the others read
the room sets it leaves in the context (joined, newly joined, newly left).

Woken syncs are the hot path (one message to a big room wakes every member), so a
provider asks the notifier whether its stream moved for this user (or room) since the
client's token before it queries anything.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from homeserver.sync.context import SyncContext
from homeserver.sync.notifier import Notifier


class StreamProvider(ABC):
    # The stream of storage/streams.py whose position in the sync token this provider reads.
    stream: ClassVar[str]

    @abstractmethod
    async def fill(self, ctx: SyncContext, response: dict[str, Any]) -> None:
        """Adds what this stream has for `ctx` (since its token, up to ctx.now) to `response`."""


def changed_rooms(notifier: Notifier, ctx: SyncContext, rooms: list[str], stream: str) -> list[str]:
    """The rooms whose `stream` may have moved since the sync token (all, on initial sync);
    rooms joined since the token count as moved."""
    if ctx.since is None:
        return rooms
    since = ctx.since[stream]
    fresh = ctx.newly_joined_room_ids
    return [r for r in rooms if r in fresh or notifier.changed_since(r, stream, since)]


def joined_room_entry(response: dict[str, Any], room_id: str) -> dict[str, Any]:
    """The rooms.join entry of a room, created empty if the rooms provider left none."""
    join = response.setdefault("rooms", {}).setdefault("join", {})
    return join.setdefault(
        room_id,
        {
            "timeline": {"events": [], "limited": False},
            "state": {"events": []},
            "account_data": {"events": []},
            "unread_notifications": {"notification_count": 0, "highlight_count": 0},
            "summary": {},
        },
    )
