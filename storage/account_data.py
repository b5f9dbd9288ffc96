"""Per-user account data, global (room_id '') and per room, on the account_data stream."""

from __future__ import annotations

from storage.database import Database

GLOBAL = ""


class AccountDataStore:
    def __init__(self, db: Database):
        self.db = db

    async def get(self, user_id: str, room_id: str, data_type: str, conn=None) -> str | None:
        """The stored content as JSON text, or None."""
        return await (conn or self.db).fetchval(
            "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3",
            user_id,
            room_id,
            data_type,
        )

    async def put(
        self, conn, user_id: str, room_id: str, data_type: str, content: str, pos: int
    ) -> None:
        await conn.execute(
            "INSERT INTO account_data (user_id, room_id, type, content, stream_pos)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, room_id, type)"
            " DO UPDATE SET content = EXCLUDED.content, stream_pos = EXCLUDED.stream_pos",
            user_id,
            room_id,
            data_type,
            content,
            pos,
        )

    async def changed(self, user_id: str, since: int, upto: int) -> list:
        """(room_id, type, content) written in (since, upto]."""
        return await self.db.fetch(
            "SELECT room_id, type, content FROM account_data"
            " WHERE user_id = $1 AND stream_pos > $2 AND stream_pos <= $3 ORDER BY stream_pos",
            user_id,
            since,
            upto,
        )

    async def for_rooms(self, user_id: str, room_ids: list[str], upto: int) -> list:
        """Everything stored for these rooms up to `upto` (for rooms joined since last sync)."""
        return await self.db.fetch(
            "SELECT room_id, type, content FROM account_data"
            " WHERE user_id = $1 AND room_id = ANY($2::text[]) AND stream_pos <= $3"
            " ORDER BY stream_pos",
            user_id,
            room_ids,
            upto,
        )

    async def of_type(self, user_id: str, data_type: str) -> dict[str, str]:
        """room_id -> content (JSON text) of the user's `data_type` in every room."""
        rows = await self.db.fetch(
            "SELECT room_id, content FROM account_data WHERE user_id = $1 AND type = $2",
            user_id,
            data_type,
        )
        return {r["room_id"]: r["content"] for r in rows}
