"""TURN credentials in the shared-secret scheme of coturn's `use-auth-secret`.

The username is "<expiry unix time>:<user id>" and the password is the base64 HMAC-SHA1 of
the username under the shared secret; the TURN server checks both without asking us.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time


def turn_credentials(voip, user_id: str, now: float | None = None) -> dict:
    expiry = int(now if now is not None else time.time()) + voip.turn_user_lifetime_s
    username = f"{expiry}:{user_id}"
    digest = hmac.new(voip.turn_shared_secret.encode(), username.encode(), hashlib.sha1).digest()
    return {
        "username": username,
        "password": base64.b64encode(digest).decode(),
        "uris": list(voip.turn_uris),
        "ttl": voip.turn_user_lifetime_s,
    }
