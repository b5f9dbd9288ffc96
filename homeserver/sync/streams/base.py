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
from homeserver.sync.notifier import Notifier, state_key_of
from storage.membership import MembershipStore


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
    fresh = ctx.newly_joined_room_ids
    moved = set(notifier.changed_among(rooms, stream, ctx.since[stream]))
    return [r for r in rooms if r in moved or r in fresh]


async def room_member_changes(
    memberships: MembershipStore, notifier: Notifier, ctx: SyncContext
) -> list[tuple[str, str]]:
    """(user_id, membership) of the member events since the token in the user's joined
    rooms, in stream order: read once per sync, and only in the rooms whose state the
    notifier says moved. Empty on initial sync."""
    if ctx.since is None:
        return []
    if ctx.member_changes is None:
        since, now = ctx.since.get("events", 0), ctx.now.get("events", 0)
        by_key = {state_key_of(r): r for r in ctx.joined_room_ids}
        moved = sorted(by_key[k] for k in notifier.changed_among(by_key, "events", since))
        ctx.member_changes = (
            await memberships.membership_changes(moved, since, now) if moved and now > since else []
        )
    return ctx.member_changes


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
