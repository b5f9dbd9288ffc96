"""The typing stream: m.typing in rooms.join.<room>.ephemeral, one query for all rooms."""

from __future__ import annotations

import time
from typing import Any

from homeserver.sync.context import SyncContext
from homeserver.sync.notifier import Notifier
from homeserver.sync.streams.base import StreamProvider, changed_rooms, joined_room_entry
from storage.ephemeral import EphemeralStore


class TypingStream(StreamProvider):
    stream = "typing"

    def __init__(self, store: EphemeralStore, notifier: Notifier):
        self.store = store
        self.notifier = notifier

    async def fill(self, ctx: SyncContext, response: dict[str, Any]) -> None:
        if not ctx.sync_filter.ephemeral.allows_dict("m.typing", None, None, None):
            return
        rooms = changed_rooms(self.notifier, ctx, list(ctx.joined_room_ids), self.stream)
        rooms = sorted(r for r in rooms if ctx.sync_filter.rooms.allows_room(r))
        if not rooms:
            return
        typing = await self.store.typing_changes(
            rooms,
            ctx.since["typing"] if ctx.since else None,
            ctx.now["typing"],
            int(time.time() * 1000),
            sorted(ctx.newly_joined_room_ids),
        )
        # An initial sync names the typers of every room where anyone ever typed, even
        # nobody: a client starting over learns that an earlier typer stopped (Synapse
        # does the same for the rooms typed in since it started; SyTest 30rooms/20typing
        # "explicitly stopped" waits for the empty list on initial syncs).
        for room_id, users in typing.items():
            entry = joined_room_entry(response, room_id)
            entry.setdefault("ephemeral", {"events": []})["events"].append(
                {"type": "m.typing", "content": {"user_ids": users}}
            )
