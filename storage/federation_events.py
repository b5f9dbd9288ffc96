"""The few reads the federation event pipeline needs beyond storage.events."""

from __future__ import annotations

from collections.abc import Iterable

from storage.database import Database


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class FederationEventStore:
    def __init__(self, db: Database):
        self.db = db

    async def oldest_timeline_events(self, room_id: str, limit: int) -> list[str]:
        """The room's earliest events by stream ordering (backfilled ones included)."""
        rows = await self.db.fetch(
            "SELECT event_id FROM events WHERE room_id = $1 ORDER BY stream_ordering LIMIT $2",
            room_id,
            limit,
        )
        return [r["event_id"] for r in rows]

    async def in_timeline(self, event_ids: Iterable[str]) -> set[str]:
        """Which of `event_ids` are timeline events (not outliers, not unknown)."""
        rows = await self.db.fetch(
            "SELECT event_id FROM events WHERE event_id = ANY($1)", list(event_ids)
        )
        return {r["event_id"] for r in rows}

    async def server_members(self, room_id: str, server_name: str) -> list[str]:
        """Users of `server_name` with a membership event in the room's current state:
        every user who ever had a membership keeps one there."""
        rows = await self.db.fetch(
            "SELECT state_key FROM current_state WHERE room_id = $1"
            " AND type = 'm.room.member' AND state_key LIKE $2",
            room_id,
            "%:" + _like_escape(server_name),
        )
        return [r["state_key"] for r in rows if r["state_key"].split(":", 1)[1] == server_name]
