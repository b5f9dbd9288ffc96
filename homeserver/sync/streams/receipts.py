"""The receipts stream: m.receipt in rooms.join.<room>.ephemeral, one query for all rooms."""

from __future__ import annotations

from typing import Any

from homeserver.sync.context import SyncContext
from homeserver.sync.notifier import Notifier
from homeserver.sync.streams.base import StreamProvider, changed_rooms, joined_room_entry
from storage.ephemeral import EphemeralStore


class ReceiptsStream(StreamProvider):
    stream = "receipts"

    def __init__(self, store: EphemeralStore, notifier: Notifier):
        self.store = store
        self.notifier = notifier

    async def fill(self, ctx: SyncContext, response: dict[str, Any]) -> None:
        if not ctx.sync_filter.ephemeral.allows_dict("m.receipt", None, None, None):
            return
        rooms = changed_rooms(self.notifier, ctx, list(ctx.joined_room_ids), self.stream)
        rooms = sorted(r for r in rooms if ctx.sync_filter.rooms.allows_room(r))
        if not rooms:
            return
        rows = await self.store.receipt_changes(
            rooms,
            ctx.since["receipts"] if ctx.since else None,
            ctx.now["receipts"],
            ctx.user_id,
            sorted(ctx.newly_joined_room_ids),
        )
        content: dict[str, dict] = {}
        for r in rows:
            receipt: dict[str, Any] = {"ts": r["ts"]}
            if r["thread_id"]:
                receipt["thread_id"] = r["thread_id"]
            (
                content.setdefault(r["room_id"], {})
                .setdefault(r["event_id"], {})
                .setdefault(r["receipt_type"], {})
            )[r["user_id"]] = receipt
        for room_id, c in content.items():
            entry = joined_room_entry(response, room_id)
            entry.setdefault("ephemeral", {"events": []})["events"].append(
                {"type": "m.receipt", "content": c}
            )
