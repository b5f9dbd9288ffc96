"""Third-party identifiers (e-mail addresses) bound to accounts, and the validation
sessions of /requestToken. Secrets (client secrets, tokens) arrive here hashed."""

from __future__ import annotations

from storage.accounts import now_ms
from storage.database import Database


class ThreepidStore:
    def __init__(self, db: Database):
        self.db = db

    # --- bindings ----------------------------------------------------------------------------

    async def owner(self, medium: str, address: str) -> str | None:
        return await self.db.fetchval(
            "SELECT user_id FROM user_threepids WHERE medium = $1 AND address = $2",
            medium,
            address,
        )

    async def of_user(self, user_id: str) -> list:
        return await self.db.fetch(
            "SELECT medium, address, validated_ts, added_ts FROM user_threepids"
            " WHERE user_id = $1 ORDER BY added_ts, address",
            user_id,
        )

    async def bind(self, conn, user_id: str, medium: str, address: str, validated_ts: int) -> bool:
        """False when the address is already bound (to anyone): nothing changes then."""
        status = await conn.execute(
            "INSERT INTO user_threepids (medium, address, user_id, validated_ts, added_ts)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            medium,
            address,
            user_id,
            validated_ts,
            now_ms(),
        )
        return status.endswith(" 1")

    async def unbind(self, user_id: str, medium: str, address: str) -> bool:
        status = await self.db.execute(
            "DELETE FROM user_threepids WHERE user_id = $1 AND medium = $2 AND address = $3",
            user_id,
            medium,
            address,
        )
        return status != "DELETE 0"

    async def unbind_all(self, conn, user_id: str) -> None:
        await conn.execute("DELETE FROM user_threepids WHERE user_id = $1", user_id)

    # --- validation sessions -----------------------------------------------------------------

    async def session_for(self, secret_hash: bytes, medium: str, address: str, purpose: str):
        return await self.db.fetchrow(
            "SELECT * FROM threepid_sessions WHERE client_secret_hash = $1 AND medium = $2"
            " AND address = $3 AND purpose = $4",
            secret_hash,
            medium,
            address,
            purpose,
        )

    async def session(self, session_id: str):
        return await self.db.fetchrow(
            "SELECT * FROM threepid_sessions WHERE session_id = $1", session_id
        )

    async def upsert_session(
        self,
        session_id: str,
        medium: str,
        address: str,
        secret_hash: bytes,
        purpose: str,
        send_attempt: int,
        token_hash: bytes,
        expires_ts: int,
        next_link: str | None,
    ) -> str:
        """Creates the session, or gives an existing one (same secret, address, purpose) a
        new token and attempt. Returns the session's ID."""
        return await self.db.fetchval(
            "INSERT INTO threepid_sessions (session_id, medium, address, client_secret_hash,"
            " purpose, send_attempt, token_hash, token_expires_ts, created_ts, next_link)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
            " ON CONFLICT (client_secret_hash, medium, address, purpose) DO UPDATE SET"
            " send_attempt = EXCLUDED.send_attempt, token_hash = EXCLUDED.token_hash,"
            " token_expires_ts = EXCLUDED.token_expires_ts, next_link = EXCLUDED.next_link"
            " RETURNING session_id",
            session_id,
            medium,
            address,
            secret_hash,
            purpose,
            send_attempt,
            token_hash,
            expires_ts,
            now_ms(),
            next_link,
        )

    async def validate(self, session_id: str, token_hash: bytes, now: int) -> bool:
        """Spends a token: marks its session validated and forgets the token, in one
        statement (a replay, or a concurrent second use, finds nothing)."""
        status = await self.db.execute(
            "UPDATE threepid_sessions SET validated_ts = $3, token_hash = NULL"
            " WHERE session_id = $1 AND token_hash = $2 AND token_expires_ts > $3",
            session_id,
            token_hash,
            now,
        )
        return status == "UPDATE 1"

    async def reset_attempt(self, session_id: str, send_attempt: int) -> None:
        await self.db.execute(
            "UPDATE threepid_sessions SET send_attempt = $2 WHERE session_id = $1",
            session_id,
            send_attempt,
        )

    async def delete_session(self, conn, session_id: str) -> bool:
        status = await conn.execute(
            "DELETE FROM threepid_sessions WHERE session_id = $1", session_id
        )
        return status == "DELETE 1"

    async def prune_sessions(self, created_before: int) -> int:
        status = await self.db.execute(
            "DELETE FROM threepid_sessions WHERE created_ts < $1", created_before
        )
        return int(status.split()[-1])

    # --- bindings made through us at identity servers -----------------------------------------

    async def remember_id_server_binding(
        self, user_id: str, medium: str, address: str, id_server: str
    ) -> None:
        await self.db.execute(
            "INSERT INTO id_server_bindings (user_id, medium, address, id_server)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            user_id,
            medium,
            address,
            id_server,
        )

    async def id_servers_bound_at(self, user_id: str, medium: str, address: str) -> list[str]:
        rows = await self.db.fetch(
            "SELECT id_server FROM id_server_bindings"
            " WHERE user_id = $1 AND medium = $2 AND address = $3",
            user_id,
            medium,
            address,
        )
        return [r["id_server"] for r in rows]

    async def forget_id_server_binding(
        self, user_id: str, medium: str, address: str, id_server: str
    ) -> None:
        await self.db.execute(
            "DELETE FROM id_server_bindings WHERE user_id = $1 AND medium = $2"
            " AND address = $3 AND id_server = $4",
            user_id,
            medium,
            address,
            id_server,
        )

    async def id_server_bound_addresses(self, user_id: str) -> list[tuple[str, str]]:
        rows = await self.db.fetch(
            "SELECT DISTINCT medium, address FROM id_server_bindings WHERE user_id = $1",
            user_id,
        )
        return [(r["medium"], r["address"]) for r in rows]
