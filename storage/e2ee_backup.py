"""Server-side room key backup: versions and their encrypted sessions.

The session data is opaque ciphertext; only the three fields the spec uses to decide
which copy of a session to keep are stored as columns.
"""

from __future__ import annotations

import orjson

from storage.database import Database


class BackupStore:
    def __init__(self, db: Database):
        self.db = db

    async def create_version(self, user_id: str, algorithm: str, auth_data: object) -> int:
        async with self.db.acquire() as conn, conn.transaction():
            # Serialises concurrent creations for one user so versions never collide.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", user_id)
            version = await conn.fetchval(
                "SELECT coalesce(max(version), 0) + 1 FROM room_key_backup_versions"
                " WHERE user_id = $1",
                user_id,
            )
            await conn.execute(
                "INSERT INTO room_key_backup_versions (user_id, version, algorithm, auth_data)"
                " VALUES ($1, $2, $3, $4)",
                user_id,
                version,
                algorithm,
                orjson.dumps(auth_data).decode(),
            )
        return version

    async def get_version(self, user_id: str, version: int | None = None) -> dict | None:
        """The named version, or the current (newest undeleted) one when version is None."""
        if version is None:
            row = await self.db.fetchrow(
                "SELECT * FROM room_key_backup_versions WHERE user_id = $1 AND NOT deleted"
                " ORDER BY version DESC LIMIT 1",
                user_id,
            )
        else:
            row = await self.db.fetchrow(
                "SELECT * FROM room_key_backup_versions"
                " WHERE user_id = $1 AND version = $2 AND NOT deleted",
                user_id,
                version,
            )
        if row is None:
            return None
        count = await self.db.fetchval(
            "SELECT count(*) FROM room_key_backup_keys WHERE user_id = $1 AND version = $2",
            user_id,
            row["version"],
        )
        return {
            "version": str(row["version"]),
            "algorithm": row["algorithm"],
            "auth_data": orjson.loads(row["auth_data"]),
            "etag": str(row["etag"]),
            "count": count,
        }

    async def update_version(self, user_id: str, version: int, auth_data: object) -> bool:
        status = await self.db.execute(
            "UPDATE room_key_backup_versions SET auth_data = $3"
            " WHERE user_id = $1 AND version = $2 AND NOT deleted",
            user_id,
            version,
            orjson.dumps(auth_data).decode(),
        )
        return status.endswith(" 1")

    async def delete_version(self, user_id: str, version: int) -> bool:
        async with self.db.acquire() as conn, conn.transaction():
            status = await conn.execute(
                "UPDATE room_key_backup_versions SET deleted = TRUE"
                " WHERE user_id = $1 AND version = $2 AND NOT deleted",
                user_id,
                version,
            )
            await conn.execute(
                "DELETE FROM room_key_backup_keys WHERE user_id = $1 AND version = $2",
                user_id,
                version,
            )
        return status.endswith(" 1")

    async def get_keys(
        self, user_id: str, version: int, room_id: str | None = None, session_id: str | None = None
    ) -> dict[str, dict[str, dict]]:
        """{room_id: {session_id: key_data}} for the whole backup, one room or one session."""
        rows = await self.db.fetch(
            "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified,"
            " session_data FROM room_key_backup_keys WHERE user_id = $1 AND version = $2"
            " AND ($3::text IS NULL OR room_id = $3) AND ($4::text IS NULL OR session_id = $4)",
            user_id,
            version,
            room_id,
            session_id,
        )
        rooms: dict[str, dict[str, dict]] = {}
        for r in rows:
            rooms.setdefault(r["room_id"], {})[r["session_id"]] = {
                "first_message_index": r["first_message_index"],
                "forwarded_count": r["forwarded_count"],
                "is_verified": r["is_verified"],
                "session_data": orjson.loads(r["session_data"]),
            }
        return rooms

    async def put_keys(
        self, user_id: str, version: int, sessions: list[tuple[str, str, dict]]
    ) -> tuple[str, int] | None:
        """Stores (room_id, session_id, key_data) where the spec says the new copy wins.

        Returns (etag, count), or None when the version is not the current one (checked
        under a row lock, so a concurrent new version cannot slip in between).
        """
        async with self.db.acquire() as conn, conn.transaction():
            current = await conn.fetchval(
                "SELECT max(version) FROM room_key_backup_versions"
                " WHERE user_id = $1 AND NOT deleted",
                user_id,
            )
            if current != version:
                return None
            await conn.execute(
                "SELECT 1 FROM room_key_backup_versions WHERE user_id = $1 AND version = $2"
                " FOR UPDATE",
                user_id,
                version,
            )
            changed = False
            for room_id, session_id, data in sessions:
                status = await conn.execute(
                    _UPSERT_SESSION,
                    user_id,
                    version,
                    room_id,
                    session_id,
                    data["first_message_index"],
                    data["forwarded_count"],
                    data["is_verified"],
                    orjson.dumps(data["session_data"]).decode(),
                )
                changed = changed or status.endswith(" 1")
            return await _etag_and_count(conn, user_id, version, bump=changed)

    async def delete_keys(
        self, user_id: str, version: int, room_id: str | None = None, session_id: str | None = None
    ) -> tuple[str, int] | None:
        async with self.db.acquire() as conn, conn.transaction():
            exists = await conn.fetchval(
                "SELECT 1 FROM room_key_backup_versions"
                " WHERE user_id = $1 AND version = $2 AND NOT deleted FOR UPDATE",
                user_id,
                version,
            )
            if not exists:
                return None
            status = await conn.execute(
                "DELETE FROM room_key_backup_keys WHERE user_id = $1 AND version = $2"
                " AND ($3::text IS NULL OR room_id = $3) AND ($4::text IS NULL OR session_id = $4)",
                user_id,
                version,
                room_id,
                session_id,
            )
            return await _etag_and_count(conn, user_id, version, bump=status != "DELETE 0")


# The spec's replacement rule: a verified copy beats an unverified one; then the lower
# first_message_index wins; then the lower forwarded_count.
_UPSERT_SESSION = """
INSERT INTO room_key_backup_keys (user_id, version, room_id, session_id,
    first_message_index, forwarded_count, is_verified, session_data)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET
    first_message_index = EXCLUDED.first_message_index,
    forwarded_count = EXCLUDED.forwarded_count,
    is_verified = EXCLUDED.is_verified,
    session_data = EXCLUDED.session_data
WHERE (EXCLUDED.is_verified AND NOT room_key_backup_keys.is_verified)
   OR (EXCLUDED.is_verified = room_key_backup_keys.is_verified AND (
        EXCLUDED.first_message_index < room_key_backup_keys.first_message_index
        OR (EXCLUDED.first_message_index = room_key_backup_keys.first_message_index
            AND EXCLUDED.forwarded_count < room_key_backup_keys.forwarded_count)))
"""


async def _etag_and_count(conn, user_id: str, version: int, *, bump: bool) -> tuple[str, int]:
    etag = await conn.fetchval(
        "UPDATE room_key_backup_versions SET etag = etag + $3::int"
        " WHERE user_id = $1 AND version = $2 RETURNING etag",
        user_id,
        version,
        1 if bump else 0,
    )
    count = await conn.fetchval(
        "SELECT count(*) FROM room_key_backup_keys WHERE user_id = $1 AND version = $2",
        user_id,
        version,
    )
    return str(etag), count
