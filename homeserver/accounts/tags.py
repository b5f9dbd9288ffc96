"""Changing a user's room tags (room account data `m.tag`): the tag routes, and the
server-notices room's `m.server_notice` tag (homeserver/admin/service.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson

from homeserver.accounts.account_data import encode_bounded

if TYPE_CHECKING:
    from homeserver.app import Homeserver

TAG_TYPE = "m.tag"


async def update_tags(
    hs: Homeserver, user_id: str, room_id: str, change: Callable[[dict], object]
) -> None:
    """Read-modify-write of m.tag inside one account_data stream transaction: the stream
    row lock serialises concurrent tag edits, so none is lost."""
    async with hs.streams.write("account_data") as w:
        stored = await hs.accounts.account_data.get(user_id, room_id, TAG_TYPE, w.conn)
        content = orjson.loads(stored) if stored else {}
        tags = content.get("tags")
        if not isinstance(tags, dict):
            tags = {}
        change(tags)
        content["tags"] = tags
        encoded = encode_bounded(hs, content)  # before the write: 413 changes nothing
        await hs.accounts.account_data.put(w.conn, user_id, room_id, TAG_TYPE, encoded, w.last)
        w.wake(users=[user_id])
