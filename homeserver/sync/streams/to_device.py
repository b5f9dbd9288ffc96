"""The to-device stream: messages for the syncing device, deleted once acknowledged.

A /sync whose `since` covers a message's position acknowledges it: the message is
deleted then, and not sent again.
"""

from __future__ import annotations

from typing import Any

from homeserver.sync.context import SyncContext
from homeserver.sync.notifier import Notifier
from homeserver.sync.streams.base import StreamProvider
from storage.e2ee_to_device import ToDeviceStore

_MAX_ACKED = 200_000


class ToDeviceStream(StreamProvider):
    stream = "to_device"

    def __init__(self, store: ToDeviceStore, notifier: Notifier):
        self.store = store
        self.notifier = notifier
        # (user, device) -> the `since` its last acknowledgement deleted up to. With the
        # notifier it lets a /sync skip both queries when nothing came after that.
        self._acked: dict[tuple[str, str], int] = {}

    async def fill(self, ctx: SyncContext, response: dict[str, Any]) -> None:
        response["to_device"] = {"events": await self._events(ctx)}

    async def _events(self, ctx: SyncContext) -> list[dict]:
        if ctx.device_id is None:
            return []
        key = (ctx.user_id, ctx.device_id)
        since = ctx.since.get("to_device", 0) if ctx.since is not None else None
        acked = self._acked.get(key)
        if (
            since is not None
            and acked is not None
            and not self.notifier.changed_since(ctx.user_id, "to_device", min(since, acked))
        ):
            return []  # nothing arrived after what was acknowledged: nothing to delete or send
        if since:
            await self.store.acknowledge(ctx.user_id, ctx.device_id, since)
        upto = ctx.now.get("to_device", 0)
        pending = await self.store.pending(ctx.user_id, ctx.device_id, upto)
        # Nothing pending up to `upto` is as good as acknowledged up to there: the device's
        # next /sync asks nothing unless a message came since. Without it, the first
        # /sync after an initial one asked, for every member woken by the same message.
        done = upto if not pending else since
        if done is not None and done >= (acked or 0):
            if len(self._acked) >= _MAX_ACKED:
                self._acked.clear()
            self._acked[key] = done
        return pending
