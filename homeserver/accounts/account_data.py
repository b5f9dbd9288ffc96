"""Writing account data: one bounded encoding (every /sync of its owner carries it) and one
stream write, shared by the account-data routes and the room-tag helpers."""

from __future__ import annotations

import orjson

from homeserver.http.errors import too_large


def encode_bounded(hs, content) -> str:
    """The JSON of one account-data object, bounded by limits.account_data_bytes: every
    /sync of its owner carries it."""
    raw = orjson.dumps(content)
    limit = hs.config.limits.account_data_bytes
    if len(raw) > limit:
        raise too_large(f"Account data is larger than {limit} bytes")
    return raw.decode()


async def write_account_data(hs, user_id: str, room_id: str, data_type: str, content) -> int:
    """Stores one item at a new account_data stream position and wakes the user's syncs."""
    encoded = encode_bounded(hs, content)
    async with hs.streams.write("account_data") as w:
        await hs.accounts.account_data.put(w.conn, user_id, room_id, data_type, encoded, w.last)
        w.wake(users=[user_id])
    return w.last
