"""Spaces: the m.space.child events of rooms, and the hierarchy walk's pagination sessions."""

from __future__ import annotations

import time

from storage.database import Database


class SpacesStore:
    def __init__(self, db: Database):
        self.db = db

    async def child_event_ids(self, room_ids: list[str]) -> dict[str, list[str]]:
        """room -> event IDs of its current m.space.child events, in one query."""
        rows = await self.db.fetch(
            "SELECT room_id, event_id FROM current_state"
            " WHERE room_id = ANY($1::text[]) AND type = 'm.space.child'",
            room_ids,
        )
        out: dict[str, list[str]] = {room_id: [] for room_id in room_ids}
        for r in rows:
            out[r["room_id"]].append(r["event_id"])
        return out

    async def save_session(
        self,
        token: str,
        user_id: str,
        room_id: str,
        suggested_only: bool,
        max_depth: int,
        walk: str,
        expire_before_ms: int,
    ) -> None:
        """Stores a page's continuation; sessions older than `expire_before_ms` go at the
        same time (they are refused anyway), so the table holds only live walks."""
        async with self.db.transaction() as conn:
            await conn.execute(
                "DELETE FROM space_hierarchy_sessions WHERE created_ts < $1", expire_before_ms
            )
            await conn.execute(
                "INSERT INTO space_hierarchy_sessions"
                " (token, user_id, room_id, suggested_only, max_depth, walk, created_ts)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                token,
                user_id,
                room_id,
                suggested_only,
                max_depth,
                walk,
                int(time.time() * 1000),
            )

    async def session(self, token: str, not_before_ms: int):
        return await self.db.fetchrow(
            "SELECT user_id, room_id, suggested_only, max_depth, walk"
            " FROM space_hierarchy_sessions WHERE token = $1 AND created_ts >= $2",
            token,
            not_before_ms,
        )
