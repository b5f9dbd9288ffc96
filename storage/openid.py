"""OpenID tokens: short-lived proofs of a user's identity for third-party services.
Only the SHA-256 of a token is stored."""

from __future__ import annotations

from storage.database import Database


class OpenIdStore:
    def __init__(self, db: Database):
        self.db = db

    async def add(self, token_hash: bytes, user_id: str, expires_ts: int, now_ms: int) -> None:
        async with self.db.acquire() as conn, conn.transaction():
            # Expired tokens are of no use to anyone: cleared as new ones are made.
            await conn.execute("DELETE FROM openid_tokens WHERE expires_ts < $1", now_ms)
            await conn.execute(
                "INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)",
                token_hash,
                user_id,
                expires_ts,
            )

    async def user_for(self, token_hash: bytes, now_ms: int) -> str | None:
        return await self.db.fetchval(
            "SELECT user_id FROM openid_tokens WHERE token_hash = $1 AND expires_ts > $2",
            token_hash,
            now_ms,
        )
