"""Typing and receipts in /sync: one query each for all the rooms."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from homeserver.sync.context import SyncContext

if TYPE_CHECKING:
    from homeserver.app import Homeserver


def _changed_rooms(hs: Homeserver, ctx: SyncContext, rooms: list[str], stream: str) -> list[str]:
    """The rooms whose `stream` may have moved since the sync token (all, on initial sync)."""
    if ctx.since is None:
        return rooms
    since = ctx.since[stream]
    fresh = ctx.newly_joined_room_ids
    return [r for r in rooms if r in fresh or hs.notifier.changed_since(r, stream, since)]


async def build_ephemeral(hs: Homeserver, ctx: SyncContext, response: dict[str, Any]) -> None:
    rooms = sorted(r for r in ctx.joined_room_ids if ctx.sync_filter.rooms.allows_room(r))
    if not rooms:
        return
    f = ctx.sync_filter.ephemeral
    since = ctx.since
    fresh = ctx.newly_joined_room_ids
    events: dict[str, list[dict[str, Any]]] = {}

    if f.allows_dict("m.typing", None, None, None):
        typing_rooms = _changed_rooms(hs, ctx, rooms, "typing")
        if typing_rooms:
            rows = await hs.db.fetch(
                "SELECT c.room_id, array_remove(array_agg(t.user_id ORDER BY t.user_id), NULL)"
                " AS users FROM typing_changes c"
                " LEFT JOIN typing t ON t.room_id = c.room_id AND t.expires_ts > $4"
                " WHERE c.room_id = ANY($1) AND ($2::bigint IS NULL OR c.stream_pos > $2"
                "   OR c.room_id = ANY($5)) AND c.stream_pos <= $3"
                " GROUP BY c.room_id",
                typing_rooms,
                since["typing"] if since else None,
                ctx.now["typing"],
                int(time.time() * 1000),
                sorted(fresh),
            )
            for r in rows:
                if since is None and not r["users"]:
                    continue
                events.setdefault(r["room_id"], []).append(
                    {"type": "m.typing", "content": {"user_ids": list(r["users"])}}
                )

    if f.allows_dict("m.receipt", None, None, None):
        receipt_rooms = _changed_rooms(hs, ctx, rooms, "receipts")
        if receipt_rooms:
            rows = await hs.db.fetch(
                "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts FROM receipts"
                " WHERE room_id = ANY($1) AND stream_pos <= $3"
                " AND ($2::bigint IS NULL OR stream_pos > $2 OR room_id = ANY($5))"
                " AND (receipt_type <> 'm.read.private' OR user_id = $4)",
                receipt_rooms,
                since["receipts"] if since else None,
                ctx.now["receipts"],
                ctx.user_id,
                sorted(fresh),
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
                events.setdefault(room_id, []).append({"type": "m.receipt", "content": c})

    join = response.setdefault("rooms", {}).setdefault("join", {})
    for room_id, evs in events.items():
        entry = join.setdefault(
            room_id,
            {
                "timeline": {"events": [], "limited": False},
                "state": {"events": []},
                "account_data": {"events": []},
                "unread_notifications": {"notification_count": 0, "highlight_count": 0},
                "summary": {},
            },
        )
        entry.setdefault("ephemeral", {"events": []})["events"].extend(evs)
