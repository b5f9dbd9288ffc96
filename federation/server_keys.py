"""Our own server keys: the signed /_matrix/key/v2/server response, old keys included.

At start-up the current signing key is recorded; a key that was current before and is
no longer (the operator rotated it) moves to old_verify_keys with the time it expired,
so that remote servers can still check the events we signed with it.
"""

from __future__ import annotations

import time
from typing import Any

from signedjson.key import encode_verify_key_base64, get_verify_key
from signedjson.sign import sign_json

from homeserver.keys import verify_key_id
from storage.federation import FederationStore


def now_ms() -> int:
    return int(time.time() * 1000)


class ServerKeys:
    def __init__(self, server_name: str, signing_key, store: FederationStore, validity_s: int):
        self.server_name = server_name
        self.signing_key = signing_key
        self.key_id = verify_key_id(signing_key)
        self.verify_key = get_verify_key(signing_key)
        self.verify_key_b64 = encode_verify_key_base64(self.verify_key)
        self.store = store
        self.validity_ms = validity_s * 1000

    async def start(self) -> None:
        await self.store.record_current_key(self.key_id, self.verify_key_b64, now_ms())

    def sign(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Adds our signature to a JSON object, keeping the signatures it already has."""
        return sign_json(obj, self.server_name, self.signing_key)

    async def server_response(self) -> dict[str, Any]:
        old = {
            key_id: {"key": key, "expired_ts": expired_ts}
            for key_id, key, expired_ts in await self.store.old_keys()
            if key_id != self.key_id
        }
        return self.sign(
            {
                "server_name": self.server_name,
                "verify_keys": {self.key_id: {"key": self.verify_key_b64}},
                "old_verify_keys": old,
                "valid_until_ts": now_ms() + self.validity_ms,
            }
        )
