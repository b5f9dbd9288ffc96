"""Accounts marked external (homeserver/policy). Schema: migrations/1500_external_users.sql."""

from __future__ import annotations

from collections.abc import Collection


class ExternalUserStore:
    def __init__(self, db):
        self.db = db

    async def mark(self, user_id: str, expires_at_ms: int | None, now_ms: int) -> None:
        await self.db.execute(
            "INSERT INTO external_users (user_id, expires_at_ms, marked_at_ms)"
            " VALUES ($1, $2, $3) ON CONFLICT (user_id) DO UPDATE"
            " SET expires_at_ms = EXCLUDED.expires_at_ms, marked_at_ms = EXCLUDED.marked_at_ms",
            user_id,
            expires_at_ms,
            now_ms,
        )

    async def unmark(self, user_id: str) -> bool:
        result = await self.db.execute("DELETE FROM external_users WHERE user_id = $1", user_id)
        return result != "DELETE 0"

    async def get(self, user_id: str):
        """(user_id, expires_at_ms, marked_at_ms) or None."""
        return await self.db.fetchrow(
            "SELECT user_id, expires_at_ms, marked_at_ms FROM external_users WHERE user_id = $1",
            user_id,
        )

    async def which(self, user_ids: Collection[str]) -> set[str]:
        """Those of `user_ids` that are marked external."""
        if not user_ids:
            return set()
        rows = await self.db.fetch(
            "SELECT user_id FROM external_users WHERE user_id = ANY($1::text[])", list(user_ids)
        )
        return {r["user_id"] for r in rows}
