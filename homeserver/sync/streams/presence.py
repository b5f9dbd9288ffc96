"""The presence stream: m.presence of the users sharing a room with the syncing user."""

from __future__ import annotations

import time
from typing import Any

from homeserver.presence.service import presence_content
from homeserver.sync.context import SyncContext
from homeserver.sync.notifier import Notifier
from homeserver.sync.streams.base import StreamProvider
from storage.presence import PresenceStore


class PresenceStream(StreamProvider):
    stream = "presence"

    def __init__(self, store: PresenceStore, notifier: Notifier):
        self.store = store
        self.notifier = notifier

    async def fill(self, ctx: SyncContext, response: dict[str, Any]) -> None:
        until = ctx.now.get("presence", 0)
        since = (ctx.since or {}).get("presence", 0)
        if since >= until:
            return
        if ctx.since is not None and not self.notifier.changed_since(
            ctx.user_id, "presence", since
        ):
            return  # a presence change wakes every co-member: none of theirs moved
        rows = await self.store.changes_for(ctx.user_id, since, until)
        if not rows:
            return
        now = int(time.time() * 1000)
        events = [
            {"type": "m.presence", "sender": r.user_id, "content": presence_content(r, now)}
            for r in rows
        ]
        response.setdefault("presence", {}).setdefault("events", []).extend(events)
