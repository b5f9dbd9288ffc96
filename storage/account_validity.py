"""Account validity: when each account expires, and the renewal token of its mail (stored
as SHA-256, single use)."""

from __future__ import annotations

from storage.database import Database


class AccountValidityStore:
    def __init__(self, db: Database):
        self.db = db

    async def get(self, user_id: str):
        return await self.db.fetchrow(
            "SELECT user_id, expiration_ts, email_sent FROM account_validity WHERE user_id = $1",
            user_id,
        )

    async def set(self, user_id: str, expiration_ts: int, email_sent: bool, conn=None) -> None:
        """Sets the expiry; any renewal token outstanding stops working."""
        await (conn or self.db).execute(
            "INSERT INTO account_validity (user_id, expiration_ts, email_sent)"
            " VALUES ($1, $2, $3) ON CONFLICT (user_id) DO UPDATE SET"
            " expiration_ts = EXCLUDED.expiration_ts, email_sent = EXCLUDED.email_sent,"
            " renewal_token_hash = NULL, renewal_token_ts = NULL",
            user_id,
            expiration_ts,
            email_sent,
        )

    async def add_missing(self, expiration_ts: int) -> int:
        """Gives every active local account without an expiry one (accounts made before
        account validity was switched on)."""
        status = await self.db.execute(
            "INSERT INTO account_validity (user_id, expiration_ts)"
            " SELECT u.user_id, $1 FROM users u WHERE NOT u.deactivated"
            " AND NOT EXISTS (SELECT 1 FROM account_validity v WHERE v.user_id = u.user_id)",
            expiration_ts,
        )
        return int(status.split()[-1])

    async def due_for_renewal_mail(self, before_ts: int, limit: int) -> list[str]:
        rows = await self.db.fetch(
            "SELECT v.user_id FROM account_validity v JOIN users u ON u.user_id = v.user_id"
            " WHERE v.expiration_ts <= $1 AND NOT v.email_sent AND NOT u.deactivated"
            " ORDER BY v.expiration_ts LIMIT $2",
            before_ts,
            limit,
        )
        return [r["user_id"] for r in rows]

    async def set_renewal_token(self, user_id: str, token_hash: bytes, now: int) -> None:
        """Marks the mail sent with this token (cleared again if sending fails)."""
        await self.db.execute(
            "UPDATE account_validity SET email_sent = TRUE, renewal_token_hash = $2,"
            " renewal_token_ts = $3 WHERE user_id = $1",
            user_id,
            token_hash,
            now,
        )

    async def mail_failed(self, user_id: str) -> None:
        await self.db.execute(
            "UPDATE account_validity SET email_sent = FALSE, renewal_token_hash = NULL"
            " WHERE user_id = $1",
            user_id,
        )

    async def renew(self, token_hash: bytes, expiration_ts: int) -> str | None:
        """Spends a renewal token: the new expiry, the token gone. The user, or None for
        an unknown or already used token (valid until used or replaced, as in Synapse)."""
        return await self.db.fetchval(
            "UPDATE account_validity SET expiration_ts = $2, email_sent = FALSE,"
            " renewal_token_hash = NULL, renewal_token_ts = NULL"
            " WHERE renewal_token_hash = $1 AND renewal_token_ts IS NOT NULL RETURNING user_id",
            token_hash,
            expiration_ts,
        )

    async def expired_before(self, before_ts: int, limit: int) -> list[str]:
        rows = await self.db.fetch(
            "SELECT v.user_id FROM account_validity v JOIN users u ON u.user_id = v.user_id"
            " WHERE v.expiration_ts <= $1 AND NOT u.deactivated ORDER BY v.expiration_ts"
            " LIMIT $2",
            before_ts,
            limit,
        )
        return [r["user_id"] for r in rows]
