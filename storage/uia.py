"""User-interactive auth sessions, shared by every worker through the database."""

from __future__ import annotations

import orjson

from storage.accounts import now_ms
from storage.database import Database


class UIASessionStore:
    def __init__(self, db: Database):
        self.db = db

    async def create(self, session_id: str, request_key: str, user_id: str | None) -> None:
        await self.db.execute(
            "INSERT INTO uia_sessions (session_id, created_ts, request_key, user_id)"
            " VALUES ($1, $2, $3, $4)",
            session_id,
            now_ms(),
            request_key,
            user_id,
        )

    async def get(self, session_id: str, max_age_ms: int):
        row = await self.db.fetchrow(
            "SELECT session_id, request_key, user_id, completed, results FROM uia_sessions"
            " WHERE session_id = $1 AND created_ts > $2",
            session_id,
            now_ms() - max_age_ms,
        )
        if row is None:
            return None
        results = row["results"]
        return {
            "session_id": row["session_id"],
            "request_key": row["request_key"],
            "user_id": row["user_id"],
            "completed": list(row["completed"]),
            "results": orjson.loads(results) if isinstance(results, str) else dict(results),
        }

    async def complete_stage(self, session_id: str, stage: str | None, result: dict) -> list[str]:
        """Records a completed stage atomically (concurrent stages of one session both count);
        with `stage` None, only merges `result` into the session's results."""
        row = await self.db.fetchrow(
            "UPDATE uia_sessions SET"
            " completed = CASE WHEN $2::text IS NULL OR $2 = ANY(completed) THEN completed"
            " ELSE array_append(completed, $2) END,"
            " results = results || $3::jsonb"
            " WHERE session_id = $1 RETURNING completed",
            session_id,
            stage,
            orjson.dumps(result).decode(),
        )
        return list(row["completed"]) if row else []

    async def delete(self, session_id: str) -> None:
        await self.db.execute("DELETE FROM uia_sessions WHERE session_id = $1", session_id)

    async def delete_expired(self, max_age_ms: int) -> None:
        await self.db.execute(
            "DELETE FROM uia_sessions WHERE created_ts <= $1", now_ms() - max_age_ms
        )
