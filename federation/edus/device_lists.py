"""m.device_list_update and m.signing_key_update, both ways.

Outbound: when a local user's devices or cross-signing keys change (DeviceLists calls
`queue` in the transaction that makes the change), the difference between what their
devices look like now and what we last announced goes out as one m.device_list_update
per changed or deleted device, numbered in a sequence per user (stream_id, prev_id =
the previous update), and an m.signing_key_update if the master or self-signing key
changed; to every server sharing a room with the user, queued in that same transaction,
with the record of what was announced.

Inbound: remote users' device lists are cached while they share a room with one of
ours. An update whose prev_ids we have all applied is applied; otherwise an update was
lost (or the list is not cached yet) and the list is fetched again with GET
/user/devices (a resync). Either way, local
users sharing a room hear of it through the device_lists stream (/sync
device_lists.changed).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, TypeGuard
from urllib.parse import quote

from federation.client import FederationError
from federation.locks import KeyedLocks
from federation.rooms import server_of
from homeserver.jsonutil import canonical
from storage.federation_devices import FederationDeviceStore

if TYPE_CHECKING:
    from federation.service import Federation
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

MAX_DEVICE_ID_LENGTH = 255
MAX_DISPLAY_NAME_LENGTH = 1024
MAX_DEVICES = 1000


def _digest(value: Any) -> str:
    return hashlib.sha256(canonical(value)).hexdigest()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _without_unsigned(keys: dict) -> dict:
    return {k: v for k, v in keys.items() if k != "unsigned"}


def _user_of(content: dict):
    return [content["user_id"]]


def valid_device_keys(keys: Any, user_id: str, device_id: str) -> bool:
    """Keys a remote server gives for one of its devices: an object that does not claim
    another user or device. Its shape is otherwise the clients' business (they check the
    signatures); a device listed with odd keys is still listed (as Synapse does)."""
    return (
        isinstance(keys, dict)
        and keys.get("user_id", user_id) == user_id
        and keys.get("device_id", device_id) == device_id
        and isinstance(keys.get("keys", {}), dict)
    )


def valid_cross_signing_key(key: Any, user_id: str, usage: str) -> bool:
    return (
        isinstance(key, dict)
        and key.get("user_id") == user_id
        and isinstance(key.get("usage"), list)
        and usage in key["usage"]
        and isinstance(key.get("keys"), dict)
    )


class DeviceListEdus:
    def __init__(self, hs: Homeserver, federation: Federation):
        self.hs = hs
        self.federation = federation
        self.sender = federation.sender
        self.store = FederationDeviceStore(hs.db)
        self._user_locks = KeyedLocks()
        self._resyncs: dict[str, asyncio.Task] = {}
        self.sender.membership_listeners.append(self.on_membership_change)

    def handlers(self) -> dict:
        return {
            "m.device_list_update": (self.on_device_list_update, _user_of),
            "m.signing_key_update": (self.on_signing_key_update, _user_of),
            # The unstable name, which older Synapse versions still send.
            "org.matrix.signing_key_update": (self.on_signing_key_update, _user_of),
        }

    def _lock(self, user_id: str):
        return self._user_locks.hold(user_id)

    # --- what we serve: a local user's device list -----------------------------------------

    async def local_device_list(self, user_id: str, conn=None) -> dict:
        """The /user/devices answer: devices with keys, cross-signing keys, stream_id
        (read in `conn`'s transaction when given)."""
        keys = await self.hs.e2ee.keys.query_local_keys({user_id: []}, None, conn=conn)
        devices = []
        for device_id, device_keys in sorted(keys["device_keys"].get(user_id, {}).items()):
            entry = {"device_id": device_id, "keys": _without_unsigned(device_keys)}
            name = device_keys.get("unsigned", {}).get("device_display_name")
            if name is not None:
                entry["device_display_name"] = name
            devices.append(entry)
        answer: dict[str, Any] = {
            "user_id": user_id,
            "stream_id": await self.store.stream_id(user_id, conn),
            "devices": devices,
        }
        if user_id in keys["master_keys"]:
            answer["master_key"] = keys["master_keys"][user_id]
        if user_id in keys["self_signing_keys"]:
            answer["self_signing_key"] = keys["self_signing_keys"][user_id]
        return answer

    # --- outbound ---------------------------------------------------------------------------

    async def queue(self, conn, user_ids: list[str]) -> list[str]:
        """Called by DeviceLists in the transaction that changes these users' devices or
        keys: queues what the local ones' servers must hear; returns the servers to `wake`
        after the commit."""
        servers: set[str] = set()
        for user_id in user_ids:
            if server_of(user_id) == self.hs.server_name:
                servers.update(await self._announce(conn, user_id))
        return sorted(servers)

    def wake(self, servers: Collection[str]) -> None:
        self.sender.wake(servers)

    async def _announce(self, conn, user_id: str) -> list[str]:
        """In the caller's transaction, which holds the device_lists stream's row lock:
        changes to device lists commit one at a time, so the comparison with what was
        announced cannot race another process's."""
        dests = self.sender.admitted(
            await self.hs.membership_store.servers_sharing_room_with(user_id, conn)
        )
        stream_id, cross_digest = await self.store.lock_stream(conn, user_id)
        now = await self.local_device_list(user_id, conn)
        announced = await self.store.announced(conn, user_id)
        edus: list[tuple[str, dict]] = []
        changed: dict[str, str] = {}
        current = {d["device_id"]: d for d in now["devices"]}
        for device_id, device in current.items():
            digest = _digest(device)
            if announced.get(device_id) == digest:
                continue
            changed[device_id] = digest
            stream_id += 1
            content = {
                "user_id": user_id,
                "device_id": device_id,
                "stream_id": stream_id,
                "prev_id": [stream_id - 1] if stream_id > 1 else [],
                "deleted": False,
                "keys": device["keys"],
            }
            if "device_display_name" in device:
                content["device_display_name"] = device["device_display_name"]
            edus.append(("m.device_list_update", content))
        deleted = sorted(set(announced) - set(current))
        for device_id in deleted:
            stream_id += 1
            content = {
                "user_id": user_id,
                "device_id": device_id,
                "stream_id": stream_id,
                "prev_id": [stream_id - 1] if stream_id > 1 else [],
                "deleted": True,
            }
            edus.append(("m.device_list_update", content))
        cross = {k: now[k] for k in ("master_key", "self_signing_key") if k in now}
        new_cross_digest = _digest(cross) if cross else None
        if new_cross_digest != cross_digest and cross:
            edus.append(("m.signing_key_update", {"user_id": user_id, **cross}))
        if not edus and new_cross_digest == cross_digest:
            return []
        await self.store.save_announced(
            conn, user_id, stream_id, new_cross_digest, changed, deleted
        )
        if dests and edus:
            return await self.sender.queue_edus(conn, dests, edus)
        return []

    # --- inbound ----------------------------------------------------------------------------

    async def on_device_list_update(self, origin: str, content: dict) -> None:
        user_id = content["user_id"]
        device_id = content.get("device_id")
        stream_id = content.get("stream_id")
        prev_ids = content.get("prev_id") or []
        deleted = content.get("deleted", False) is True
        keys = content.get("keys")
        name = content.get("device_display_name")
        if (
            not isinstance(device_id, str)
            or not device_id
            or len(device_id) > MAX_DEVICE_ID_LENGTH
            or not _is_int(stream_id)
            or not isinstance(prev_ids, list)
            or not all(_is_int(p) for p in prev_ids)
            or (name is not None and not isinstance(name, str))
            or (
                not deleted and keys is not None and not valid_device_keys(keys, user_id, device_id)
            )
        ):
            return
        if name is not None:
            name = name[:MAX_DISPLAY_NAME_LENGTH]
        if not await self.hs.membership_store.shares_room_with_server(user_id, self.hs.server_name):
            return  # nobody here tracks this user
        async with self._lock(user_id):
            cached = await self.store.remote_list(user_id)
            if cached is not None and stream_id in cached.seen:
                return  # a repeat
            if cached is None or not prev_ids or not all(p in cached.seen for p in prev_ids):
                # Not cached yet (we start tracking the user now, as Synapse does), or an
                # update was lost: the whole list.
                self.schedule_resync(user_id)
                return

            async def apply(conn) -> None:
                await self.store.apply_update(
                    conn, user_id, stream_id, device_id, deleted, name, keys, _now_ms()
                )

            await self.hs.e2ee.device_lists.mark_changed([user_id], work=apply)

    async def on_signing_key_update(self, origin: str, content: dict) -> None:
        user_id = content["user_id"]
        master = content.get("master_key")
        self_signing = content.get("self_signing_key")
        if master is not None and not valid_cross_signing_key(master, user_id, "master"):
            return
        if self_signing is not None and not valid_cross_signing_key(
            self_signing, user_id, "self_signing"
        ):
            return
        if master is None and self_signing is None:
            return
        if not await self.hs.membership_store.shares_room_with_server(user_id, self.hs.server_name):
            return

        async def apply(conn) -> None:
            await self.store.set_cross_signing(conn, user_id, master, self_signing)

        async with self._lock(user_id):
            await self.hs.e2ee.device_lists.mark_changed([user_id], work=apply)

    async def on_membership_change(self, room_ids: set[str]) -> None:
        """Forgets the cached lists of remote members of these rooms who no longer share
        a room with any of our users: no update would reach us while they do not, so the
        cache could not be trusted if they shared one again."""
        cached = await self.store.cached_members(room_ids)
        if not cached:
            return
        sharing = await self.hs.membership_store.users_sharing_room_with_server(
            cached, self.hs.server_name
        )
        for user_id in sorted(cached - sharing):
            async with self._lock(user_id):
                async with self.hs.db.acquire() as conn, conn.transaction():
                    await self.store.forget(conn, user_id)

    # --- resync -----------------------------------------------------------------------------

    def schedule_resync(self, user_id: str) -> asyncio.Task[dict | None]:
        """Fetches the user's whole device list in the background (once at a time); the
        task's result is the /user/devices answer, None on failure."""
        task = self._resyncs.get(user_id)
        if task is None or task.done():
            task = self.hs.run_in_background(self._resync_task(user_id))
            self._resyncs[user_id] = task
        return task

    async def _resync_task(self, user_id: str) -> dict | None:
        try:
            return await self.resync(user_id)
        finally:
            self._resyncs.pop(user_id, None)

    async def resync(self, user_id: str) -> dict | None:
        """GET /user/devices from the user's server into the cache; None on failure (the
        cache is then dropped: queries go to the server until a resync succeeds)."""
        server = server_of(user_id)
        try:
            answer = await self.federation.client.get_json(
                server, f"/_matrix/federation/v1/user/devices/{quote(user_id, safe='')}"
            )
            parsed = _parse_device_list(answer, user_id)
        except (FederationError, ValueError) as e:
            logger.info("device list resync with %s failed: %s", server, type(e).__name__)
            parsed = None

        async with self._lock(user_id):
            if parsed is None:

                async def forget(conn) -> None:
                    await self.store.forget(conn, user_id)

                await self.hs.e2ee.device_lists.mark_changed([user_id], work=forget)
                return None
            stream_id, devices, master, self_signing = parsed

            async def replace(conn) -> None:
                await self.store.replace_snapshot(
                    conn, user_id, stream_id, devices, master, self_signing, _now_ms()
                )

            await self.hs.e2ee.device_lists.mark_changed([user_id], work=replace)
        return answer


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_device_list(answer: Any, user_id: str):
    """(stream_id, [(device_id, name, keys)], master, self_signing) of a /user/devices
    answer about `user_id`; raises ValueError when it is not one."""
    if not isinstance(answer, dict) or answer.get("user_id") != user_id:
        raise ValueError("not a device list of this user")
    stream_id = answer.get("stream_id")
    devices = answer.get("devices")
    if not _is_int(stream_id) or not isinstance(devices, list) or len(devices) > MAX_DEVICES:
        raise ValueError("malformed device list")
    parsed = []
    for device in devices:
        if not isinstance(device, dict):
            raise ValueError("malformed device")
        device_id = device.get("device_id")
        keys = device.get("keys")
        name = device.get("device_display_name")
        if not isinstance(device_id, str) or not device_id:
            raise ValueError("malformed device")
        if not valid_device_keys(keys, user_id, device_id):
            continue  # a device without (usable) keys is of no use to encryption
        parsed.append(
            (device_id, name[:MAX_DISPLAY_NAME_LENGTH] if isinstance(name, str) else None, keys)
        )
    master = answer.get("master_key")
    self_signing = answer.get("self_signing_key")
    if master is not None and not valid_cross_signing_key(master, user_id, "master"):
        master = None
    if self_signing is not None and not valid_cross_signing_key(
        self_signing, user_id, "self_signing"
    ):
        self_signing = None
    return stream_id, parsed, master, self_signing
