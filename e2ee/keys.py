"""Device keys, one-time keys and fallback keys: upload, query and claim.

`query_local_keys` and `claim_local_keys` serve local clients and, through the
federation package, remote servers alike; the client-facing `query` and `claim` split a
request by server and hand the remote part to `self.remote` when federation sets it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from e2ee.signatures import require_dict, split_key_id
from homeserver.http.errors import bad_json, invalid_param
from storage.e2ee_keys import E2EKeyStore

if TYPE_CHECKING:
    from e2ee.devices.device_lists import DeviceLists
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

# Clients keep about 50 one-time keys; this bounds one upload far above that.
MAX_KEYS_PER_UPLOAD = 200
MAX_QUERY_USERS = 1000


def server_of(user_id: str) -> str:
    return user_id.partition(":")[2]


# Asks another server for keys: (server, {user_id: devices or algorithms}) -> its answer.
RemoteKeysCall = Callable[[str, dict[str, Any]], Awaitable[dict]]


class KeyService:
    def __init__(
        self,
        hs: Homeserver,
        store: E2EKeyStore,
        device_lists: DeviceLists,
        remote_query: RemoteKeysCall | None = None,
        remote_claim: RemoteKeysCall | None = None,
    ):
        self.hs = hs
        self.store = store
        self.device_lists = device_lists
        # Federation's, when this server federates; else remote users are failures.
        self.remote_query = remote_query
        self.remote_claim = remote_claim

    # --- upload ------------------------------------------------------------------

    async def upload(self, user_id: str, device_id: str, body: dict) -> dict:
        device_keys = body.get("device_keys")
        if device_keys is not None:
            device_keys = self._check_device_keys(user_id, device_id, device_keys)
        one_time = self._check_key_map(body.get("one_time_keys"), "one_time_keys")
        fallback_raw = body.get("fallback_keys", body.get("org.matrix.msc2732.fallback_keys"))
        fallback = self._check_key_map(fallback_raw, "fallback_keys")
        if len({alg for alg, _, _ in fallback}) != len(fallback):
            raise invalid_param("At most one fallback key per algorithm")
        if one_time:
            existing = await self.store.existing_one_time_keys(
                user_id, device_id, [(a, k) for a, k, _ in one_time]
            )
            for alg, key_id, key in one_time:
                old = existing.get((alg, key_id))
                if old is not None and old != key:
                    raise invalid_param(f"One-time key {alg}:{key_id} already exists")

        stored_keys = await self.store.get_device_keys(user_id, device_id)
        keys_changed = device_keys is not None and device_keys != stored_keys

        async def write(conn) -> None:
            if keys_changed and device_keys is not None:
                await self.store.set_device_keys(conn, user_id, device_id, device_keys)
            if one_time:
                await self.store.add_one_time_keys(conn, user_id, device_id, one_time)
            if fallback:
                await self.store.set_fallback_keys(conn, user_id, device_id, fallback)

        if keys_changed:
            await self.device_lists.mark_changed([user_id], work=write)
        elif one_time or fallback:
            async with self.hs.db.acquire() as conn, conn.transaction():
                await write(conn)
        return {"one_time_key_counts": await self.one_time_key_counts(user_id, device_id)}

    def _check_device_keys(self, user_id: str, device_id: str, keys: object) -> dict:
        """The shape of `device_keys`, as Synapse checks it.

        Their signature and key bytes are not checked: clients verify them (the spec puts
        that on the receiving client), and SyTest's and other servers' clients upload
        placeholder keys and signatures the server stores as given.
        """
        keys = require_dict(keys, "device_keys")
        if keys.get("user_id") != user_id or keys.get("device_id") != device_id:
            raise invalid_param("device_keys must be for the requesting user and device")
        algorithms = keys.get("algorithms")
        if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
            raise bad_json("'device_keys.algorithms' must be a list of strings")
        key_map = require_dict(keys.get("keys"), "device_keys.keys")
        for key_id, value in key_map.items():
            split_key_id(key_id, "device_keys.keys")
            if not isinstance(value, str):
                raise bad_json("device_keys.keys values must be strings")
        signatures = require_dict(keys.get("signatures"), "device_keys.signatures")
        for by_key in signatures.values():
            if not isinstance(by_key, dict) or not all(isinstance(v, str) for v in by_key.values()):
                raise bad_json("device_keys.signatures must map key IDs to strings")
        return keys

    def _check_key_map(self, keys: object, what: str) -> list[tuple[str, str, object]]:
        """One-time or fallback keys: {"algorithm:key_id": key string or signed key object}.

        Any algorithm is stored and served as given (as Synapse does): the algorithm is the
        client's business. A key object's signature is left to the claiming client.
        """
        if keys is None:
            return []
        keys = require_dict(keys, what)
        if len(keys) > MAX_KEYS_PER_UPLOAD:
            raise invalid_param(f"At most {MAX_KEYS_PER_UPLOAD} keys in {what}")
        checked = []
        for full_id, key in keys.items():
            algorithm, key_id = split_key_id(full_id, what)
            if not isinstance(key, str):
                key = require_dict(key, f"{what}.{full_id}")
                if not isinstance(key.get("key"), str):
                    raise bad_json(f"'{what}.{full_id}.key' must be a string")
            checked.append((algorithm, key_id, key))
        return checked

    async def one_time_key_counts(self, user_id: str, device_id: str) -> dict[str, int]:
        counts = await self.store.one_time_key_counts(user_id, device_id)
        counts.setdefault("signed_curve25519", 0)  # as /sync reports it
        return counts

    # --- query -------------------------------------------------------------------

    async def query(self, requester_id: str, device_keys: dict[str, list[str]]) -> dict:
        local, remote = self._split_by_server(device_keys)
        result = await self.query_local_keys(local, requester_id)
        result["failures"] = {}
        for server, users in remote.items():
            await self._merge_remote(result, server, users, self.remote_query)
        return result

    async def query_local_keys(
        self, user_devices: dict[str, list[str]], requester_id: str | None = None, *, conn=None
    ) -> dict:
        """Keys of local users: {device_keys, master_keys, self_signing_keys, user_signing_keys}.

        `requester_id` is the local user asking, or None for a remote server: a user's
        user-signing key, and the signatures made with it, are shown only to that user.
        `conn`: read in that transaction (one that is changing the keys).
        """
        users = list(user_devices)
        signatures = self._index_signatures(
            await self.store.signatures_for(users, conn), requester_id
        )
        device_keys: dict[str, dict] = {u: {} for u in users}
        for user_id, device_id, keys, display_name in await self.store.devices_with_keys(
            users, conn
        ):
            wanted = user_devices[user_id]
            if wanted and device_id not in wanted:
                continue
            keys = _with_signatures(keys, signatures.get((user_id, device_id)))
            # Always present, as Synapse serves it (SyTest expects it).
            keys["unsigned"] = dict(keys.get("unsigned") or {})
            if display_name is not None:
                keys["unsigned"]["device_display_name"] = display_name
            device_keys[user_id][device_id] = keys
        result = {
            "device_keys": device_keys,
            "master_keys": {},
            "self_signing_keys": {},
            "user_signing_keys": {},
        }
        for (user_id, key_type), key in (await self.store.cross_signing_keys(users, conn)).items():
            if key_type == "user_signing" and user_id != requester_id:
                continue
            public = next(iter(key.get("keys", {}).values()), None)
            key = _with_signatures(key, signatures.get((user_id, public)))
            result[f"{key_type}_keys"][user_id] = key
        return result

    @staticmethod
    def _index_signatures(rows, requester_id: str | None) -> dict:
        """{(target user, target id): {signer: {key_id: sig}}}, visible ones only."""
        index: dict = {}
        for r in rows:
            signer = r["signer_user_id"]
            if signer != r["target_user_id"] and signer != requester_id:
                continue
            index.setdefault((r["target_user_id"], r["target_id"]), {}).setdefault(signer, {})[
                r["signer_key_id"]
            ] = r["signature"]
        return index

    # --- claim -------------------------------------------------------------------

    async def claim(self, requested: dict[str, dict[str, str]]) -> dict:
        local, remote = self._split_by_server(requested)
        result = {"one_time_keys": await self.claim_local_keys(local), "failures": {}}
        for server, users in remote.items():
            await self._merge_remote(result, server, users, self.remote_claim)
        return result

    async def claim_local_keys(self, requested: dict[str, dict[str, str]]) -> dict:
        """{user: {device: {"alg:key_id": key}}}; devices with nothing left are absent."""
        claimed: dict[str, dict] = {}
        for user_id, devices in requested.items():
            for device_id, algorithm in devices.items():
                found = await self.store.claim_key(user_id, device_id, algorithm)
                if found is not None:
                    key_id, key = found
                    claimed.setdefault(user_id, {})[device_id] = {f"{algorithm}:{key_id}": key}
        if claimed:
            # MSC3202: an appservice's device learns its new key counts by transaction.
            await self.hs.appservices.keys_claimed(claimed)
        return claimed

    # --- helpers -----------------------------------------------------------------

    def _split_by_server(self, by_user: dict) -> tuple[dict, dict[str, dict]]:
        local: dict = {}
        remote: dict[str, dict] = {}
        for user_id, value in by_user.items():
            server = server_of(user_id)
            if server == self.hs.server_name:
                local[user_id] = value
            else:
                remote.setdefault(server, {})[user_id] = value
        return local, remote

    @staticmethod
    async def _merge_remote(result: dict, server: str, users: dict, fetch) -> None:
        if fetch is None:
            result["failures"][server] = {"status": 503, "message": "Federation is not available"}
            return
        try:
            answer = await fetch(server, users)
        except Exception as exc:  # an unreachable server is reported, not fatal
            logger.info("key request to %s failed: %s", server, type(exc).__name__)
            result["failures"][server] = {"status": 503, "message": "Server did not answer"}
            return
        for section, by_user in answer.items():
            if isinstance(by_user, dict) and section in result:
                result[section].update(by_user)


def _with_signatures(key: dict, extra: dict | None) -> dict:
    if not extra:
        return dict(key)
    merged = {signer: dict(sigs) for signer, sigs in key.get("signatures", {}).items()}
    for signer, sigs in extra.items():
        merged.setdefault(signer, {}).update(sigs)
    return {**key, "signatures": merged}


def parse_query_body(body: dict) -> dict[str, list[str]]:
    device_keys = require_dict(body.get("device_keys"), "device_keys")
    if len(device_keys) > MAX_QUERY_USERS:
        raise invalid_param(f"At most {MAX_QUERY_USERS} users per query")
    for user_id, devices in device_keys.items():
        _check_user_id(user_id)
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            raise bad_json("device_keys values must be lists of device IDs")
    return device_keys


def parse_claim_body(body: dict) -> dict[str, dict[str, str]]:
    one_time_keys = require_dict(body.get("one_time_keys"), "one_time_keys")
    if len(one_time_keys) > MAX_QUERY_USERS:
        raise invalid_param(f"At most {MAX_QUERY_USERS} users per claim")
    for user_id, devices in one_time_keys.items():
        _check_user_id(user_id)
        devices = require_dict(devices, "one_time_keys")
        if not all(isinstance(a, str) for a in devices.values()):
            raise bad_json("one_time_keys values must map device IDs to algorithms")
    return one_time_keys


def _check_user_id(user_id: str) -> None:
    if not user_id.startswith("@") or ":" not in user_id:
        raise invalid_param(f"Invalid user ID {user_id!r}")
