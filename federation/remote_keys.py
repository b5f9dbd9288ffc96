"""The e2ee hooks for remote users: key queries and one-time key claims.

A query about remote users is answered from the device-list cache for users whose list
we keep (they share a room with one of ours, and updates keep it current); a user who
shares a room but is not cached yet, asked about whole, is cached first (a resync, GET
/user/devices); the others are asked of their server with POST /user/keys/query, and
those among them who share a room with us get their list cached in the background. Claims always go to
the server. Remote answers are filtered: only the users asked about, only keys that
say they belong to that user and device.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from federation.client import FederationError
from federation.edus.device_lists import (
    DeviceListEdus,
    valid_cross_signing_key,
    valid_device_keys,
)

if TYPE_CHECKING:
    from federation.service import Federation
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

QUERY_PATH = "/_matrix/federation/v1/user/keys/query"
CLAIM_PATH = "/_matrix/federation/v1/user/keys/claim"


class RemoteKeys:
    def __init__(self, hs: Homeserver, federation: Federation, device_lists: DeviceListEdus):
        self.hs = hs
        self.client = federation.client
        self.device_lists = device_lists
        self.store = device_lists.store

    async def query(self, server: str, users: dict[str, list[str]]) -> dict:
        result: dict[str, dict] = {"device_keys": {}, "master_keys": {}, "self_signing_keys": {}}
        tracked = await self._tracked(users)
        # Users who share a room with us but whose list is not cached yet, asked about
        # whole: their list is fetched (GET /user/devices) and cached now, then answered
        # from the cache like the others (as Synapse does).
        untracked = [u for u in users if u not in tracked and not users[u]]
        for user_id in sorted(await self._sharing(untracked)):
            # Shielded: a client giving up does not cancel the resync others may await.
            if await asyncio.shield(self.device_lists.schedule_resync(user_id)) is not None:
                tracked.add(user_id)
        await self._from_cache(result, {u: users[u] for u in tracked})
        rest = {u: d for u, d in users.items() if u not in tracked}
        if not rest:
            return result
        try:
            answer = await self.client.post_json(server, QUERY_PATH, {"device_keys": rest})
        except FederationError as e:
            logger.info("key query to %s failed: %s", server, e.status or "no answer")
            if not tracked:
                raise
            result["failures"] = {server: {"status": e.status or 503, "message": "Failed"}}
            return result
        _merge_query_answer(result, answer, rest)
        for user_id in await self._sharing(rest):
            self.device_lists.schedule_resync(user_id)
        return result

    async def claim(self, server: str, users: dict[str, dict[str, str]]) -> dict:
        answer = await self.client.post_json(server, CLAIM_PATH, {"one_time_keys": users})
        claimed: dict[str, dict] = {}
        by_user = answer.get("one_time_keys") if isinstance(answer, dict) else None
        if isinstance(by_user, dict):
            for user_id, devices in by_user.items():
                if user_id not in users or not isinstance(devices, dict):
                    continue
                for device_id, keys in devices.items():
                    if device_id in users[user_id] and isinstance(keys, dict):
                        claimed.setdefault(user_id, {})[device_id] = keys
        return {"one_time_keys": claimed}

    async def _sharing(self, users) -> set[str]:
        return await self.hs.membership_store.users_sharing_room_with_server(
            users, self.hs.server_name
        )

    async def _tracked(self, users) -> set[str]:
        """Users whose cached list is current: cached, and still sharing a room with us
        (updates stop coming when they no longer do)."""
        cached = await self.store.cached_lists(users)
        if not cached:
            return set()
        return set(cached) & await self._sharing(cached)

    async def _from_cache(self, result: dict, users: dict[str, list[str]]) -> None:
        if not users:
            return
        lists = await self.store.cached_lists(users)
        devices = await self.store.cached_devices(users)
        for user_id, wanted in users.items():
            entry = result["device_keys"].setdefault(user_id, {})
            for device_id, (name, keys) in devices.get(user_id, {}).items():
                if keys is None or (wanted and device_id not in wanted):
                    continue
                if name is not None:
                    keys = {
                        **keys,
                        "unsigned": {**keys.get("unsigned", {}), "device_display_name": name},
                    }
                entry[device_id] = keys
            cached = lists.get(user_id)
            if cached is not None and cached.master_key is not None:
                result["master_keys"][user_id] = cached.master_key
            if cached is not None and cached.self_signing_key is not None:
                result["self_signing_keys"][user_id] = cached.self_signing_key


def _merge_query_answer(result: dict, answer: Any, asked: dict[str, list[str]]) -> None:
    if not isinstance(answer, dict):
        return
    device_keys = answer.get("device_keys")
    if isinstance(device_keys, dict):
        for user_id, devices in device_keys.items():
            if user_id not in asked or not isinstance(devices, dict):
                continue
            wanted = asked[user_id]
            result["device_keys"][user_id] = {
                device_id: keys
                for device_id, keys in devices.items()
                if valid_device_keys(keys, user_id, device_id)
                and (not wanted or device_id in wanted)
            }
    for section, usage in (("master_keys", "master"), ("self_signing_keys", "self_signing")):
        keys = answer.get(section)
        if isinstance(keys, dict):
            for user_id, key in keys.items():
                if user_id in asked and valid_cross_signing_key(key, user_id, usage):
                    result[section][user_id] = key
