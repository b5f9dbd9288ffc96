"""The presence stream: m.presence of the users sharing a room with the syncing user."""

from __future__ import annotations

import time
from typing import Any

from homeserver.presence.service import Presence, presence_content
from homeserver.sync.context import SyncContext
from homeserver.sync.notifier import Notifier
from homeserver.sync.streams.base import StreamProvider, room_member_changes
from storage.membership import MembershipStore
from storage.presence import PresenceRow


class PresenceStream(StreamProvider):
    stream = "presence"

    def __init__(self, presence: Presence, memberships: MembershipStore, notifier: Notifier):
        self.presence = presence
        self.store = presence.store
        self.memberships = memberships
        self.notifier = notifier

    async def fill(self, ctx: SyncContext, response: dict[str, Any]) -> None:
        wanted = ctx.sync_filter.presence
        if wanted.allows_none():
            return
        until = ctx.now.get("presence", 0)
        since = (ctx.since or {}).get("presence", 0)
        rows: list[tuple[str, PresenceRow | None]] = []
        if since < until and (ctx.since is None or self._changed(ctx, since)):
            rows = [(r.user_id, r) for r in await self.store.changes_for(ctx.user_id, since, until)]
        if ctx.since is not None and self.presence.mode != "off":
            # Users new to the client, however long ago their presence last changed (or
            # never: offline): the members of rooms joined since (the rooms stream runs
            # first and names them), and users who joined our rooms since (as Synapse).
            joiners = [
                u
                for u, membership in await room_member_changes(self.memberships, self.notifier, ctx)
                if membership == "join"
            ]
            if ctx.newly_joined_room_ids or joiners:
                seen = {u for u, _ in rows} | {ctx.user_id}
                rows += [
                    (u, r)
                    for u, r in await self.store.of_members(
                        sorted(ctx.newly_joined_room_ids), sorted(set(joiners) - seen), until
                    )
                    if u not in seen
                ]
        if not rows:
            return
        now = int(time.time() * 1000)
        # The filter's `types`, `senders` and their negations (spec: Filter.presence).
        events = [
            {"type": "m.presence", "sender": u, "content": presence_content(r, now)}
            for u, r in rows
            if wanted.allows_dict("m.presence", u, None, None)
        ]
        response.setdefault("presence", {}).setdefault("events", []).extend(events)

    def _changed(self, ctx: SyncContext, since: int) -> bool:
        """Whether a co-member's presence may have changed: a change moves its user's key
        and their rooms' keys on the presence stream (storage.presence)."""
        changed = self.notifier.changed_since
        return changed(ctx.user_id, "presence", since) or any(
            changed(room_id, "presence", since) for room_id in ctx.joined_room_ids
        )
