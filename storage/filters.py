"""Uploaded sync filters: stored once, referred to by a per-server numeric ID."""

from __future__ import annotations

from storage.database import Database


class FilterStore:
    def __init__(self, db: Database):
        self.db = db

    async def add(self, user_id: str, filter_json: str) -> int:
        return await self.db.fetchval(
            "INSERT INTO filters (user_id, filter_json) VALUES ($1, $2) RETURNING filter_id",
            user_id,
            filter_json,
        )

    async def get(self, user_id: str, filter_id: int) -> str | None:
        return await self.db.fetchval(
            "SELECT filter_json FROM filters WHERE user_id = $1 AND filter_id = $2",
            user_id,
            filter_id,
        )
