"""Devices and the access tokens that belong to them (tokens stored as SHA-256 only)."""

from __future__ import annotations

from storage.accounts import now_ms
from storage.database import Database


class DeviceStore:
    def __init__(self, db: Database):
        self.db = db

    async def ensure_device(
        self, conn, user_id: str, device_id: str, display_name: str | None, ip: str | None
    ) -> None:
        """Creates the device, or marks an existing one as just seen (login with device_id)."""
        ts = now_ms()
        await conn.execute(
            "INSERT INTO devices (user_id, device_id, display_name, created_ts, last_seen_ts,"
            " last_seen_ip) VALUES ($1, $2, $3, $4, $4, $5)"
            " ON CONFLICT (user_id, device_id) DO UPDATE SET last_seen_ts = EXCLUDED.last_seen_ts,"
            " last_seen_ip = EXCLUDED.last_seen_ip",
            user_id,
            device_id,
            display_name,
            ts,
            ip,
        )

    async def add_token(self, conn, token_hash: bytes, user_id: str, device_id: str) -> None:
        await conn.execute(
            "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts)"
            " VALUES ($1, $2, $3, $4)",
            token_hash,
            user_id,
            device_id,
            now_ms(),
        )

    async def list_devices(self, user_id: str) -> list:
        return await self.db.fetch(
            "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices"
            " WHERE user_id = $1 ORDER BY created_ts, device_id",
            user_id,
        )

    async def get_device(self, user_id: str, device_id: str):
        return await self.db.fetchrow(
            "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices"
            " WHERE user_id = $1 AND device_id = $2",
            user_id,
            device_id,
        )

    async def set_display_name(self, user_id: str, device_id: str, name: str | None) -> bool:
        status = await self.db.execute(
            "UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2",
            user_id,
            device_id,
            name,
        )
        return not status.endswith(" 0")

    async def device_ids(self, user_id: str, conn=None) -> list[str]:
        rows = await (conn or self.db).fetch(
            "SELECT device_id FROM devices WHERE user_id = $1", user_id
        )
        return [r["device_id"] for r in rows]

    async def delete_devices(self, conn, user_id: str, device_ids: list[str]) -> list[str]:
        """Deletes the devices, every token of theirs and the rows only they use, in the
        caller's transaction: message transaction IDs, and sliding sync connections (their
        positions and sent rooms cascade; a `pos` of the device answers M_UNKNOWN_POS even
        to a new login that takes the same device ID). Rows another domain must react to
        (keys, to-device messages) go through AccountService.devices_deleted_hooks.
        Returns the IDs that existed."""
        for table in ("access_tokens", "event_txns", "sliding_sync_connections"):
            await conn.execute(
                f"DELETE FROM {table} WHERE user_id = $1 AND device_id = ANY($2::text[])",
                user_id,
                device_ids,
            )
        rows = await conn.fetch(
            "DELETE FROM devices WHERE user_id = $1 AND device_id = ANY($2::text[])"
            " RETURNING device_id",
            user_id,
            device_ids,
        )
        return [r["device_id"] for r in rows]

    async def device_of_token(self, token_hash: bytes):
        return await self.db.fetchrow(
            "SELECT user_id, device_id FROM access_tokens WHERE token_hash = $1", token_hash
        )

    async def session_of_token(self, token_hash: bytes):
        """(user_id, device_id, is_admin, locked, suspended, shadow_banned,
        messages_per_second, burst_count, external_expires_at_ms, expiration_ts) of an
        access token of an active user, or None. messages_per_second and burst_count are the
        user's rate-limit override (NULL when none); external_expires_at_ms the expiry of an
        external account (homeserver/policy; NULL when none); expiration_ts account
        validity's (NULL when none)."""
        return await self.db.fetchrow(
            "SELECT t.user_id, t.device_id, u.is_admin, u.locked, u.suspended,"
            " u.shadow_banned, u.is_guest, o.messages_per_second, o.burst_count,"
            " x.expires_at_ms AS external_expires_at_ms, v.expiration_ts"
            " FROM access_tokens t"
            " JOIN users u ON u.user_id = t.user_id"
            " LEFT JOIN ratelimit_overrides o ON o.user_id = t.user_id"
            " LEFT JOIN external_users x ON x.user_id = t.user_id"
            " LEFT JOIN account_validity v ON v.user_id = t.user_id"
            " WHERE t.token_hash = $1 AND NOT u.deactivated",
            token_hash,
        )

    async def devices_of(self, user_ids: list[str]) -> dict[str, set[str]]:
        """user -> their device IDs, for the users that have devices."""
        rows = await self.db.fetch(
            "SELECT user_id, device_id FROM devices WHERE user_id = ANY($1::text[])", user_ids
        )
        devices: dict[str, set[str]] = {}
        for r in rows:
            devices.setdefault(r["user_id"], set()).add(r["device_id"])
        return devices
