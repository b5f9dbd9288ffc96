"""Federation storage: our own signing keys (current and retired) and the remote key cache."""

from __future__ import annotations

from dataclasses import dataclass

from storage.database import Database


@dataclass(frozen=True)
class RemoteKey:
    server_name: str
    key_id: str
    verify_key: str
    valid_until_ts: int
    expired_ts: int | None


class FederationStore:
    def __init__(self, db: Database):
        self.db = db

    async def record_current_key(self, key_id: str, verify_key: str, now_ms: int) -> None:
        """Makes `key_id` the current key; any other current key becomes an old one."""
        async with self.db.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE federation_own_keys SET expired_ts = $2"
                " WHERE key_id <> $1 AND expired_ts IS NULL",
                key_id,
                now_ms,
            )
            await conn.execute(
                "INSERT INTO federation_own_keys (key_id, verify_key, added_ts)"
                " VALUES ($1, $2, $3)"
                " ON CONFLICT (key_id) DO UPDATE SET expired_ts = NULL",
                key_id,
                verify_key,
                now_ms,
            )

    async def old_keys(self) -> list[tuple[str, str, int]]:
        """(key id, public key, expired_ts) of every key we no longer sign with."""
        rows = await self.db.fetch(
            "SELECT key_id, verify_key, expired_ts FROM federation_own_keys"
            " WHERE expired_ts IS NOT NULL ORDER BY key_id"
        )
        return [(r["key_id"], r["verify_key"], r["expired_ts"]) for r in rows]

    async def store_remote_keys(self, keys: list[RemoteKey], response_json: str, now_ms: int):
        async with self.db.acquire() as conn:
            await conn.executemany(
                "INSERT INTO federation_remote_keys (server_name, key_id, verify_key,"
                " valid_until_ts, expired_ts, fetched_ts, response_json)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT (server_name, key_id) DO UPDATE SET"
                " verify_key = EXCLUDED.verify_key, valid_until_ts = EXCLUDED.valid_until_ts,"
                " expired_ts = EXCLUDED.expired_ts, fetched_ts = EXCLUDED.fetched_ts,"
                " response_json = EXCLUDED.response_json"
                # Never let an older response replace a fresher one.
                " WHERE federation_remote_keys.valid_until_ts <= EXCLUDED.valid_until_ts",
                [
                    (
                        k.server_name,
                        k.key_id,
                        k.verify_key,
                        k.valid_until_ts,
                        k.expired_ts,
                        now_ms,
                        response_json,
                    )
                    for k in keys
                ],
            )

    async def remote_key(self, server_name: str, key_id: str) -> RemoteKey | None:
        row = await self.db.fetchrow(
            "SELECT server_name, key_id, verify_key, valid_until_ts, expired_ts"
            " FROM federation_remote_keys WHERE server_name = $1 AND key_id = $2",
            server_name,
            key_id,
        )
        return RemoteKey(**dict(row)) if row else None

    async def remote_responses(self, server_name: str) -> list[tuple[str, int]]:
        """The distinct signed responses cached for a server: (json, valid_until_ts)."""
        rows = await self.db.fetch(
            "SELECT response_json, max(valid_until_ts) AS valid_until_ts"
            " FROM federation_remote_keys WHERE server_name = $1 GROUP BY response_json",
            server_name,
        )
        return [(r["response_json"], r["valid_until_ts"]) for r in rows]

    # --- reads for the federation query endpoints (tables owned by the core) ---

    async def local_profile(self, user_id: str) -> dict | None:
        """The profile of an existing account, or None if there is no such user."""
        row = await self.db.fetchrow(
            "SELECT p.displayname, p.avatar_url FROM users u"
            " LEFT JOIN profiles p ON p.user_id = u.user_id WHERE u.user_id = $1",
            user_id,
        )
        return dict(row) if row else None

    async def alias_room(self, alias: str) -> str | None:
        return await self.db.fetchval("SELECT room_id FROM room_aliases WHERE alias = $1", alias)
