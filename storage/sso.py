"""Single sign-on: external identities linked to local users, and login tokens.

Only the SHA-256 of a login token is stored; a token is spent by the statement that
reads it, so it logs in once, on whichever process it reaches."""

from __future__ import annotations

from storage.accounts import now_ms
from storage.database import Database


class SsoStore:
    def __init__(self, db: Database):
        self.db = db

    async def user_for(self, auth_provider: str, external_id: str) -> str | None:
        return await self.db.fetchval(
            "SELECT user_id FROM user_external_ids WHERE auth_provider = $1 AND external_id = $2",
            auth_provider,
            external_id,
        )

    async def link(self, conn, auth_provider: str, external_id: str, user_id: str) -> bool:
        """Links the identity to the user in the caller's transaction; False when it is
        linked already (to anyone)."""
        status = await conn.execute(
            "INSERT INTO user_external_ids (auth_provider, external_id, user_id, created_ts)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            auth_provider,
            external_id,
            user_id,
            now_ms(),
        )
        return not status.endswith(" 0")

    async def providers_for_user(self, user_id: str) -> list[str]:
        rows = await self.db.fetch(
            "SELECT DISTINCT auth_provider FROM user_external_ids WHERE user_id = $1", user_id
        )
        return [r["auth_provider"] for r in rows]

    async def external_ids_of(self, auth_provider: str, user_id: str) -> list[str]:
        rows = await self.db.fetch(
            "SELECT external_id FROM user_external_ids WHERE auth_provider = $1 AND user_id = $2",
            auth_provider,
            user_id,
        )
        return [r["external_id"] for r in rows]

    async def forget_user(self, conn, user_id: str) -> None:
        """A deactivated user's external identities and unspent login tokens, in the
        caller's transaction."""
        await conn.execute("DELETE FROM user_external_ids WHERE user_id = $1", user_id)
        await conn.execute("DELETE FROM login_tokens WHERE user_id = $1", user_id)

    async def add_login_token(
        self, token_hash: bytes, user_id: str, auth_provider: str, expires_ts: int
    ) -> None:
        async with self.db.acquire() as conn, conn.transaction():
            # Expired tokens are of no use to anyone: cleared as new ones are made.
            await conn.execute("DELETE FROM login_tokens WHERE expires_ts < $1", now_ms())
            await conn.execute(
                "INSERT INTO login_tokens (token_hash, user_id, auth_provider, expires_ts)"
                " VALUES ($1, $2, $3, $4)",
                token_hash,
                user_id,
                auth_provider,
                expires_ts,
            )

    async def spend_login_token(self, token_hash: bytes) -> str | None:
        """The user of an unexpired token, which is deleted: a second use finds nothing."""
        return await self.db.fetchval(
            "DELETE FROM login_tokens WHERE token_hash = $1 RETURNING"
            " CASE WHEN expires_ts > $2 THEN user_id END",
            token_hash,
            now_ms(),
        )
