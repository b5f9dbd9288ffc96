"""Registration tokens (MSC3231 / Synapse admin API) and shared-secret registration nonces."""

from __future__ import annotations

from storage.accounts import now_ms
from storage.database import Database

_COLUMNS = "token, uses_allowed, pending, completed, expiry_time"
# A token is usable while it has uses left and has not expired.
_USABLE = (
    "(uses_allowed IS NULL OR pending + completed < uses_allowed)"
    " AND (expiry_time IS NULL OR expiry_time > $2)"
)


class RegistrationTokenStore:
    def __init__(self, db: Database):
        self.db = db

    async def create(self, token: str, uses_allowed: int | None, expiry_time: int | None) -> bool:
        status = await self.db.execute(
            "INSERT INTO registration_tokens (token, uses_allowed, expiry_time)"
            " VALUES ($1, $2, $3) ON CONFLICT (token) DO NOTHING",
            token,
            uses_allowed,
            expiry_time,
        )
        return not status.endswith(" 0")

    async def get(self, token: str):
        return await self.db.fetchrow(
            f"SELECT {_COLUMNS} FROM registration_tokens WHERE token = $1", token
        )

    async def list(self, valid: bool | None) -> list:
        if valid is None:
            return await self.db.fetch(f"SELECT {_COLUMNS} FROM registration_tokens ORDER BY token")
        negate = "" if valid else "NOT "
        return await self.db.fetch(
            f"SELECT {_COLUMNS} FROM registration_tokens"
            f" WHERE {negate}({_USABLE.replace('$2', '$1')}) ORDER BY token",
            now_ms(),
        )

    async def update(self, token: str, changes: dict[str, int | None]) -> bool:
        """Sets `uses_allowed` and/or `expiry_time` (the keys given); False if unknown."""
        # Column names come from this fixed pair, never from the request.
        columns = [c for c in ("uses_allowed", "expiry_time") if c in changes]
        if not columns:
            return await self.get(token) is not None
        assignments = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(columns))
        status = await self.db.execute(
            f"UPDATE registration_tokens SET {assignments} WHERE token = $1",
            token,
            *(changes[c] for c in columns),
        )
        return not status.endswith(" 0")

    async def delete(self, token: str) -> bool:
        status = await self.db.execute("DELETE FROM registration_tokens WHERE token = $1", token)
        return not status.endswith(" 0")

    async def is_usable(self, token: str) -> bool:
        return bool(
            await self.db.fetchval(
                f"SELECT 1 FROM registration_tokens WHERE token = $1 AND {_USABLE}",
                token,
                now_ms(),
            )
        )

    async def any_usable(self) -> bool:
        return bool(
            await self.db.fetchval(
                f"SELECT 1 FROM registration_tokens WHERE {_USABLE.replace('$2', '$1')} LIMIT 1",
                now_ms(),
            )
        )

    async def consume(self, conn, token: str) -> bool:
        """Counts one completed registration, in the registering transaction; False if spent."""
        status = await conn.execute(
            f"UPDATE registration_tokens SET completed = completed + 1"
            f" WHERE token = $1 AND {_USABLE}",
            token,
            now_ms(),
        )
        return not status.endswith(" 0")


class NonceStore:
    def __init__(self, db: Database):
        self.db = db

    async def create(self, nonce: str) -> None:
        await self.db.execute(
            "INSERT INTO registration_nonces (nonce, created_ts) VALUES ($1, $2)", nonce, now_ms()
        )

    async def take(self, nonce: str, max_age_ms: int) -> bool:
        """Consumes the nonce: each one authorises a single registration."""
        await self.db.execute(
            "DELETE FROM registration_nonces WHERE created_ts <= $1", now_ms() - max_age_ms
        )
        status = await self.db.execute("DELETE FROM registration_nonces WHERE nonce = $1", nonce)
        return not status.endswith(" 0")
