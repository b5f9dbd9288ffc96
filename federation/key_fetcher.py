"""Remote servers' verify keys: from the PostgreSQL cache, else fetched and checked.

A key is fetched from its server directly (/_matrix/key/v2/server) and, if that fails,
through each configured trusted notary (/_matrix/key/v2/query) in turn. Every response
must be signed by the server it describes with a key it publishes; a notary's answer
must also carry the notary's signature with the key the operator configured for it.
Responses are cached verbatim so that we can in turn serve them as a notary.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import SignatureVerifyException, verify_signed_json
from unpaddedbase64 import decode_base64

from federation.client import FederationError
from federation.server_keys import ServerKeys, now_ms
from homeserver.config import TrustedKeyServer
from storage.federation import FederationStore, RemoteKey

logger = logging.getLogger(__name__)


class KeyResponseError(ValueError):
    pass


def decode_key(key_id: str, key_b64: str):
    if not key_id.startswith("ed25519:"):
        raise KeyResponseError(f"unsupported key algorithm in {key_id!r}")
    try:
        return decode_verify_key_bytes(key_id, decode_base64(key_b64))
    except Exception:
        raise KeyResponseError(f"malformed key {key_id!r}") from None


def _key_entries(response: dict, name: str) -> dict[str, dict]:
    entries = response.get(name, {})
    if not isinstance(entries, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("key"), str) for v in entries.values()
    ):
        raise KeyResponseError(f"{name} is malformed")
    return entries


def parse_server_keys(response: Any, server_name: str) -> list[RemoteKey]:
    """Checks a /_matrix/key/v2/server response for `server_name`; returns its keys.

    It must name that server and be signed by at least one of the keys it publishes in
    verify_keys, with every such signature valid. An expired response is kept too: its
    keys verify what was signed before valid_until_ts (key_usable), and a notary serves
    it when it has nothing newer (as Synapse does).
    """
    if not isinstance(response, dict) or response.get("server_name") != server_name:
        raise KeyResponseError("response is for another server")
    valid_until = response.get("valid_until_ts")
    if not isinstance(valid_until, int) or isinstance(valid_until, bool):
        raise KeyResponseError("valid_until_ts is missing")
    verify_keys = {
        k: decode_key(k, v["key"]) for k, v in _key_entries(response, "verify_keys").items()
    }
    signatures = (response.get("signatures") or {}).get(server_name)
    signed_with = [k for k in (signatures or {}) if k in verify_keys]
    if not signed_with:
        raise KeyResponseError("response is not signed by a key it publishes")
    for key_id in signed_with:
        try:
            verify_signed_json(response, server_name, verify_keys[key_id])
        except SignatureVerifyException:
            raise KeyResponseError(f"bad signature by {key_id}") from None
    keys = [
        RemoteKey(server_name, key_id, entry["key"], valid_until, None)
        for key_id, entry in response["verify_keys"].items()
    ]
    for key_id, entry in _key_entries(response, "old_verify_keys").items():
        expired = entry.get("expired_ts")
        if isinstance(expired, int) and key_id not in verify_keys:
            decode_key(key_id, entry["key"])
            keys.append(RemoteKey(server_name, key_id, entry["key"], expired, expired))
    return keys


def check_notary_signature(response: dict, notary: TrustedKeyServer) -> None:
    for key_id, key_b64 in notary.verify_keys:
        if key_id in ((response.get("signatures") or {}).get(notary.server_name) or {}):
            try:
                verify_signed_json(response, notary.server_name, decode_key(key_id, key_b64))
                return
            except SignatureVerifyException:
                break
    raise KeyResponseError(f"not signed by notary {notary.server_name}")


def key_usable(key: RemoteKey | None, at_ts: int) -> bool:
    """A key is usable for something that happened at `at_ts` (a request: now)."""
    if key is None or key.valid_until_ts < at_ts:
        return False
    return key.expired_ts is None or key.expired_ts > at_ts


class KeyFetcher:
    def __init__(
        self,
        own: ServerKeys,
        store: FederationStore,
        client,
        trusted: tuple[TrustedKeyServer, ...],
    ):
        self.own = own
        self.store = store
        self.client = client
        self.trusted = trusted
        # One fetch per server at a time: a burst of requests from a new server
        # should cost one key request, not one each.
        self._inflight: dict[str, asyncio.Future] = {}

    async def verify_key_for_request(self, server_name: str, key_id: str):
        return await self.verify_key(server_name, key_id, now_ms())

    async def verify_key(self, server_name: str, key_id: str, at_ts: int):
        """The VerifyKey that `server_name` used as `key_id` at `at_ts`, or None."""
        if server_name == self.own.server_name:
            return self.own.verify_key if key_id == self.own.key_id else None
        cached = await self.store.remote_key(server_name, key_id)
        if not key_usable(cached, at_ts):
            await self._fetch_once(server_name, key_id)
            cached = await self.store.remote_key(server_name, key_id)
            if not key_usable(cached, at_ts):
                return None
        assert cached is not None  # key_usable() is False for None
        return decode_key(key_id, cached.verify_key)

    async def _fetch_once(self, server_name: str, key_id: str) -> None:
        task = self._inflight.get(server_name)
        if task is None:
            task = asyncio.ensure_future(self.fetch(server_name, key_id))
            self._inflight[server_name] = task
            task.add_done_callback(lambda t: self._forget(server_name, t))
        await asyncio.shield(task)

    def _forget(self, server_name: str, task: asyncio.Future) -> None:
        if self._inflight.get(server_name) is task:
            del self._inflight[server_name]

    async def fetch(self, server_name: str, key_id: str) -> bool:
        """Fetches and caches `server_name`'s keys; True if `key_id` was among them."""

        now = now_ms()
        try:
            response = await self.client.get_json(server_name, "/_matrix/key/v2/server")
            keys = parse_server_keys(response, server_name)
            await self._store(keys, response, now)
            if any(k.key_id == key_id for k in keys):
                return True
        except (FederationError, KeyResponseError) as e:
            logger.info("direct key fetch from %s failed: %s", server_name, e)
        for notary in self.trusted:
            try:
                if await self._fetch_via_notary(notary, server_name, key_id, now):
                    return True
            except (FederationError, KeyResponseError) as e:
                logger.info(
                    "key fetch for %s via %s failed: %s", server_name, notary.server_name, e
                )
        return False

    async def _fetch_via_notary(
        self, notary: TrustedKeyServer, server_name: str, key_id: str, now: int
    ) -> bool:
        body = {"server_keys": {server_name: {key_id: {"minimum_valid_until_ts": now}}}}
        answer = await self.client.post_json(notary.server_name, "/_matrix/key/v2/query", body)
        found = False
        for response in (answer or {}).get("server_keys") or []:
            check_notary_signature(response, notary)
            keys = parse_server_keys(response, server_name)
            await self._store(keys, response, now)
            found = found or any(k.key_id == key_id for k in keys)
        return found

    async def _store(self, keys: list[RemoteKey], response: dict, now: int) -> None:
        await self.store.store_remote_keys(keys, orjson.dumps(response).decode(), now)
