"""The few reads the federation event pipeline needs beyond storage.events."""

from __future__ import annotations

from collections.abc import Iterable

from storage.database import Database


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
