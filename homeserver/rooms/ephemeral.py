"""Typing notifications, read receipts and read markers (ephemeral room data): storing
them, waking /sync and handing them to federation. Local users reach these through
routes/ephemeral.py; other servers' EDUs through federation/edus/ephemeral.py."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from homeserver.jsonutil import dumps_str

if TYPE_CHECKING:
    from homeserver.app import Homeserver


async def set_typing(
    hs: Homeserver, room_id: str, user_id: str, typing: bool, timeout_ms: int
) -> None:
    expires = int(time.time() * 1000) + timeout_ms
    async with hs.streams.write("typing") as w:
        await hs.ephemeral_store.set_typing(
            w.conn, room_id, user_id, expires if typing else None, w.last
        )
        w.wake(rooms=[room_id])
    if typing:
        hs.run_in_background(_expire_typing(hs, room_id, user_id, expires, timeout_ms))
    await hs.federation.edus.ephemeral.local_typing(room_id, user_id, typing)
    await hs.appservices.on_typing(room_id)


async def _expire_typing(
    hs: Homeserver, room_id: str, user_id: str, expires: int, timeout_ms: int
) -> None:
    await asyncio.sleep(timeout_ms / 1000)
    still = await hs.ephemeral_store.typing_expiry(room_id, user_id)
    if still == expires:
        await set_typing(hs, room_id, user_id, False, 0)


async def store_receipt(
    hs: Homeserver,
    room_id: str,
    user_id: str,
    receipt_type: str,
    event_id: str,
    thread_id: str | None,
) -> None:
    if receipt_type == "m.fully_read":
        await _set_fully_read(hs, room_id, user_id, event_id)
        return
    ts = int(time.time() * 1000)
    async with hs.streams.write("receipts") as w:
        stored = await hs.ephemeral_store.put_receipt(
            w.conn, room_id, receipt_type, user_id, thread_id or "", event_id, ts, w.last
        )
        if stored:
            w.wake(rooms=[room_id], users=[user_id])
    if not stored:
        return  # an older receipt than the user's: nothing changed, nothing to tell
    await hs.federation.edus.ephemeral.local_receipt(
        room_id, user_id, receipt_type, event_id, thread_id, ts
    )
    await hs.appservices.on_receipt(room_id, user_id, receipt_type, event_id, thread_id, ts)


async def _set_fully_read(hs: Homeserver, room_id: str, user_id: str, event_id: str) -> None:

    async with hs.streams.write("account_data") as w:
        content = dumps_str({"event_id": event_id})
        await hs.accounts.account_data.put(
            w.conn, user_id, room_id, "m.fully_read", content, w.last
        )
        w.wake(users=[user_id])
