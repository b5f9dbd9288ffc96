"""Users and their profiles: the rows an account is made of."""

from __future__ import annotations

import time

from storage.database import Database


def now_ms() -> int:
    return int(time.time() * 1000)


class AccountStore:
    def __init__(self, db: Database):
        self.db = db

    async def get_user(self, user_id: str):
        """(user_id, password_hash, is_admin, deactivated, locked) or None."""
        return await self.db.fetchrow(
            "SELECT user_id, password_hash, is_admin, deactivated, locked FROM users"
            " WHERE user_id = $1",
            user_id,
        )

    async def set_admin(self, user_id: str, admin: bool) -> bool:
        """False when there is no such user."""
        status = await self.db.execute(
            "UPDATE users SET is_admin = $2 WHERE user_id = $1", user_id, admin
        )
        return status != "UPDATE 0"

    async def user_exists(self, user_id: str) -> bool:
        return bool(await self.db.fetchval("SELECT 1 FROM users WHERE user_id = $1", user_id))

    async def is_active(self, user_id: str) -> bool:
        """The user exists and is not deactivated."""
        return bool(
            await self.db.fetchval(
                "SELECT 1 FROM users WHERE user_id = $1 AND NOT deactivated", user_id
            )
        )

    async def create_user(
        self,
        conn,
        user_id: str,
        password_hash: str | None,
        is_admin: bool,
        displayname: str,
        is_guest: bool = False,
    ) -> bool:
        """Inserts the user and their profile; False when the ID was taken meanwhile."""
        status = await conn.execute(
            "INSERT INTO users (user_id, password_hash, created_ts, is_admin, is_guest)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id) DO NOTHING",
            user_id,
            password_hash,
            now_ms(),
            is_admin,
            is_guest,
        )
        if status.endswith(" 0"):
            return False
        await conn.execute(
            "INSERT INTO profiles (user_id, displayname) VALUES ($1, $2)"
            " ON CONFLICT (user_id) DO UPDATE SET displayname = EXCLUDED.displayname",
            user_id,
            displayname,
        )
        return True

    async def upgrade_guest(self, conn, user_id: str, password_hash: str) -> bool:
        """A guest becomes a full user with a password; False if `user_id` is no guest."""
        status = await conn.execute(
            "UPDATE users SET is_guest = false, password_hash = $2 WHERE user_id = $1 AND is_guest",
            user_id,
            password_hash,
        )
        return not status.endswith(" 0")

    async def guests_among(self, user_ids: list[str]) -> list[str]:
        rows = await self.db.fetch(
            "SELECT user_id FROM users WHERE user_id = ANY($1::text[]) AND is_guest", user_ids
        )
        return [r["user_id"] for r in rows]

    async def set_password_hash(self, user_id: str, password_hash: str | None, conn=None) -> None:
        await (conn or self.db).execute(
            "UPDATE users SET password_hash = $2 WHERE user_id = $1", user_id, password_hash
        )

    async def mark_deactivated(self, conn, user_id: str, erase: bool = False) -> None:
        """With `erase`, also records the request to redact the user's events, which the
        housekeeping runner carries out (homeserver/housekeeping/erasure.py)."""
        await conn.execute(
            "UPDATE users SET deactivated = TRUE, password_hash = NULL WHERE user_id = $1",
            user_id,
        )
        if erase:
            await conn.execute("UPDATE users SET erased = TRUE WHERE user_id = $1", user_id)
            await conn.execute(
                "INSERT INTO user_erasures (user_id, requested_ts) VALUES ($1, $2)"
                " ON CONFLICT (user_id) DO NOTHING",
                user_id,
                now_ms(),
            )


class ProfileStore:
    def __init__(self, db: Database):
        self.db = db

    async def get(self, user_id: str):
        """(displayname, avatar_url) of an existing user, or None when there is no such user."""
        return await self.db.fetchrow(
            "SELECT p.displayname, p.avatar_url FROM users u"
            " LEFT JOIN profiles p ON p.user_id = u.user_id WHERE u.user_id = $1",
            user_id,
        )

    async def set_field(self, user_id: str, name: str, value: str | None) -> None:
        # `name` comes from a fixed pair chosen by the caller, never from the request.
        column = {"displayname": "displayname", "avatar_url": "avatar_url"}[name]
        await self.db.execute(
            f"INSERT INTO profiles (user_id, {column}) VALUES ($1, $2)"
            f" ON CONFLICT (user_id) DO UPDATE SET {column} = EXCLUDED.{column}",
            user_id,
            value,
        )

    async def display_names(self, user_ids: list[str]) -> dict[str, str | None]:
        rows = await self.db.fetch(
            "SELECT user_id, displayname FROM profiles WHERE user_id = ANY($1)", user_ids
        )
        return {r["user_id"]: r["displayname"] for r in rows}
