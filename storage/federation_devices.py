"""Device lists over federation: the sequence of updates we send per local user, and
the cache of remote users' device lists that their updates keep current."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from storage.database import Database
from storage.membership import MEMBERS_SQL

# How many applied update IDs are remembered per remote user for prev_id checks.
MAX_SEEN_IDS = 50


@dataclass(frozen=True)
class RemoteDeviceList:
    user_id: str
    stream_id: int
    seen: frozenset[int]
    master_key: dict | None
    self_signing_key: dict | None


def _dumps(value) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _loads(raw: str | None):
    return None if raw is None else orjson.loads(raw)


class FederationDeviceStore:
    def __init__(self, db: Database):
        self.db = db

    # --- outbound: our users' update sequences ------------------------------------------

    async def lock_stream(self, conn, user_id: str) -> tuple[int, str | None]:
        """(last stream_id, cross-signing digest) of a local user, row-locked until the
        caller's transaction ends: one process at a time extends a user's sequence."""
        await conn.execute(
            "INSERT INTO federation_device_list_streams (user_id) VALUES ($1)"
            " ON CONFLICT DO NOTHING",
            user_id,
        )
        row = await conn.fetchrow(
            "SELECT stream_id, cross_signing_digest FROM federation_device_list_streams"
            " WHERE user_id = $1 FOR UPDATE",
            user_id,
        )
        return row["stream_id"], row["cross_signing_digest"]

    async def announced(self, conn, user_id: str) -> dict[str, str]:
        rows = await conn.fetch(
            "SELECT device_id, digest FROM federation_device_list_announced WHERE user_id = $1",
            user_id,
        )
        return {r["device_id"]: r["digest"] for r in rows}

    async def save_announced(
        self,
        conn,
        user_id: str,
        stream_id: int,
        cross_signing_digest: str | None,
        changed: dict[str, str],
        deleted: Iterable[str],
    ) -> None:
        await conn.execute(
            "UPDATE federation_device_list_streams SET stream_id = $2, cross_signing_digest = $3"
            " WHERE user_id = $1",
            user_id,
            stream_id,
            cross_signing_digest,
        )
        if changed:
            await conn.executemany(
                "INSERT INTO federation_device_list_announced (user_id, device_id, digest)"
                " VALUES ($1, $2, $3) ON CONFLICT (user_id, device_id)"
                " DO UPDATE SET digest = EXCLUDED.digest",
                [(user_id, d, digest) for d, digest in changed.items()],
            )
        deleted = list(deleted)
        if deleted:
            await conn.execute(
                "DELETE FROM federation_device_list_announced"
                " WHERE user_id = $1 AND device_id = ANY($2::text[])",
                user_id,
                deleted,
            )

    async def stream_id(self, user_id: str, conn=None) -> int:
        value = await (conn or self.db).fetchval(
            "SELECT stream_id FROM federation_device_list_streams WHERE user_id = $1", user_id
        )
        return value or 0

    # --- inbound: the remote cache -------------------------------------------------------

    async def remote_list(self, user_id: str) -> RemoteDeviceList | None:
        r = await self.db.fetchrow(
            "SELECT user_id, stream_id, seen_stream_ids, master_key, self_signing_key"
            " FROM federation_remote_device_lists WHERE user_id = $1",
            user_id,
        )
        if r is None:
            return None
        return RemoteDeviceList(
            r["user_id"],
            r["stream_id"],
            frozenset(r["seen_stream_ids"]),
            _loads(r["master_key"]),
            _loads(r["self_signing_key"]),
        )

    async def cached_lists(self, user_ids: Iterable[str]) -> dict[str, RemoteDeviceList]:
        rows = await self.db.fetch(
            "SELECT user_id, stream_id, seen_stream_ids, master_key, self_signing_key"
            " FROM federation_remote_device_lists WHERE user_id = ANY($1::text[])",
            list(user_ids),
        )
        return {
            r["user_id"]: RemoteDeviceList(
                r["user_id"],
                r["stream_id"],
                frozenset(r["seen_stream_ids"]),
                _loads(r["master_key"]),
                _loads(r["self_signing_key"]),
            )
            for r in rows
        }

    async def cached_members(self, room_ids: Iterable[str]) -> set[str]:
        """Members (in any membership) of these rooms whose device list we cache."""
        rows = await self.db.fetch(
            f"SELECT DISTINCT m.user_id FROM ({MEMBERS_SQL}) m"
            " JOIN federation_remote_device_lists d ON d.user_id = m.user_id"
            " WHERE m.room_id = ANY($1::text[])",
            list(room_ids),
        )
        return {r["user_id"] for r in rows}

    async def cached_devices(
        self, user_ids: Iterable[str]
    ) -> dict[str, dict[str, tuple[str | None, dict | None]]]:
        """{user: {device: (display name, keys)}}."""
        rows = await self.db.fetch(
            "SELECT user_id, device_id, display_name, keys_json FROM federation_remote_devices"
            " WHERE user_id = ANY($1::text[])",
            list(user_ids),
        )
        found: dict[str, dict] = {}
        for r in rows:
            found.setdefault(r["user_id"], {})[r["device_id"]] = (
                r["display_name"],
                _loads(r["keys_json"]),
            )
        return found

    async def apply_update(
        self,
        conn,
        user_id: str,
        stream_id: int,
        device_id: str,
        deleted: bool,
        display_name: str | None,
        keys: dict | None,
        now_ms: int,
    ) -> None:
        if deleted:
            await conn.execute(
                "DELETE FROM federation_remote_devices WHERE user_id = $1 AND device_id = $2",
                user_id,
                device_id,
            )
        else:
            await conn.execute(
                "INSERT INTO federation_remote_devices (user_id, device_id, display_name,"
                " keys_json) VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, device_id)"
                " DO UPDATE SET display_name = EXCLUDED.display_name,"
                " keys_json = EXCLUDED.keys_json",
                user_id,
                device_id,
                display_name,
                _dumps(keys),
            )
        await conn.execute(
            "UPDATE federation_remote_device_lists SET stream_id = GREATEST(stream_id, $2),"
            " seen_stream_ids = (array_append(seen_stream_ids, $2))"
            f"[greatest(1, cardinality(seen_stream_ids) + 2 - {MAX_SEEN_IDS}):],"
            " updated_ts = $3 WHERE user_id = $1",
            user_id,
            stream_id,
            now_ms,
        )

    async def replace_snapshot(
        self,
        conn,
        user_id: str,
        stream_id: int,
        devices: list[tuple[str, str | None, dict]],
        master_key: dict | None,
        self_signing_key: dict | None,
        now_ms: int,
    ) -> None:
        """A full device list (from /user/devices) replaces whatever was cached."""
        await conn.execute("DELETE FROM federation_remote_devices WHERE user_id = $1", user_id)
        await conn.executemany(
            "INSERT INTO federation_remote_devices (user_id, device_id, display_name, keys_json)"
            " VALUES ($1, $2, $3, $4)",
            [(user_id, d, name, _dumps(keys)) for d, name, keys in devices],
        )
        await conn.execute(
            "INSERT INTO federation_remote_device_lists (user_id, stream_id, seen_stream_ids,"
            " master_key, self_signing_key, updated_ts) VALUES ($1, $2, ARRAY[$2::bigint], $3,"
            " $4, $5) ON CONFLICT (user_id) DO UPDATE SET stream_id = EXCLUDED.stream_id,"
            " seen_stream_ids = EXCLUDED.seen_stream_ids, master_key = EXCLUDED.master_key,"
            " self_signing_key = EXCLUDED.self_signing_key, updated_ts = EXCLUDED.updated_ts",
            user_id,
            stream_id,
            _dumps(master_key),
            _dumps(self_signing_key),
            now_ms,
        )

    async def set_cross_signing(
        self, conn, user_id: str, master_key: dict | None, self_signing_key: dict | None
    ) -> None:
        """Updates the keys given (None leaves one as it is) of a cached user."""
        await conn.execute(
            "UPDATE federation_remote_device_lists SET"
            " master_key = coalesce($2, master_key),"
            " self_signing_key = coalesce($3, self_signing_key) WHERE user_id = $1",
            user_id,
            _dumps(master_key),
            _dumps(self_signing_key),
        )

    async def forget(self, conn, user_id: str) -> None:
        await conn.execute("DELETE FROM federation_remote_devices WHERE user_id = $1", user_id)
        await conn.execute("DELETE FROM federation_remote_device_lists WHERE user_id = $1", user_id)
