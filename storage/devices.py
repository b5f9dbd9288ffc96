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
        """Deletes the devices and every token of theirs; returns the IDs that existed."""
        await conn.execute(
            "DELETE FROM access_tokens WHERE user_id = $1 AND device_id = ANY($2::text[])",
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
        """(user_id, device_id, is_admin) of an access token of an active user, or None."""
        return await self.db.fetchrow(
            "SELECT t.user_id, t.device_id, u.is_admin FROM access_tokens t"
            " JOIN users u ON u.user_id = t.user_id"
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
