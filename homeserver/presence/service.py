"""Presence: setting it (PUT /presence, /sync?set_presence=) and reporting it (GET, /sync).

Timing users out (online -> unavailable -> offline when they stop syncing) is
`time_out`, which the housekeeping runner calls. Federation (m.presence EDUs) hooks in through `on_local_change`.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from storage.presence import PresenceRow, PresenceStore

STATES = ("online", "offline", "unavailable")
# A user counts as currently active if they did something in the last few minutes.
ACTIVE_WINDOW_MS = 5 * 60 * 1000
# /sync polls refresh last_active at most this often, so syncing costs no write per poll.
TOUCH_INTERVAL_MS = 60 * 1000
FROM_SYNC_CACHE_SIZE = 100_000


def _now_ms() -> int:
    return int(time.time() * 1000)


def presence_content(row: PresenceRow | None, now_ms: int) -> dict:
    if row is None:
        return {"presence": "offline"}
    ago = max(0, now_ms - row.last_active_ts)
    content = {
        "presence": row.state,
        "last_active_ago": ago,
        "currently_active": row.state == "online" and ago < ACTIVE_WINDOW_MS,
    }
    if row.status_msg is not None:
        content["status_msg"] = row.status_msg
    if row.displayname is not None:
        content["displayname"] = row.displayname
    if row.avatar_url is not None:
        content["avatar_url"] = row.avatar_url
    return content


class Presence:
    def __init__(self, store: PresenceStore, notifier=None):
        self.store = store
        self.notifier = notifier
        # user -> (presence position, state, last_active_ts) as /sync last saw or wrote
        # them; a presence change of the user (any process) wakes them past the position.
        self._from_sync: OrderedDict[str, tuple[int, str, int]] = OrderedDict()
        # Called with the user ID after a local user's presence changed (federation).
        self.on_local_change: list = []
        # presence.mode (config): "off" keeps none, "local" keeps it among our users,
        # "federated" also sends it to and takes it from other servers.
        self.mode = "local"

    @property
    def federated(self) -> bool:
        return self.mode == "federated"

    async def set(self, user_id: str, state: str, status_msg: str | None) -> None:
        if self.mode == "off":
            return
        await self.store.set(user_id, state, status_msg, _now_ms())
        await self._changed(user_id)

    async def _changed(self, user_id: str) -> None:
        for callback in self.on_local_change:
            await callback(user_id)

    async def time_out(self, now_ms: int, idle_ms: int, offline_ms: int) -> list[str]:
        """The spec's idle timeout (presence.md, "Idle timeout"): online users inactive for
        `idle_ms` become unavailable, and anyone inactive for `offline_ms` (no /sync: a
        syncing client refreshes last_active every TOUCH_INTERVAL_MS) becomes offline.
        Their next /sync sets them online again."""
        changed = await self.store.time_out(now_ms - idle_ms, now_ms - offline_ms)
        for user_id in changed:
            await self._changed(user_id)
        return changed

    async def set_from_sync(self, user_id: str, state: str | None) -> None:
        """What /sync's `set_presence` asks for: None means the default, "online".

        "offline" leaves presence unchanged (the client does not want to be marked
        online by polling). A state that is already set only refreshes last_active.
        """
        state = state or "online"
        if state == "offline" or state not in STATES or self.mode == "off":
            return
        now = _now_ms()
        known = self._from_sync.get(user_id)
        if (
            known is not None
            and self.notifier is not None
            and known[1] == state
            and now - known[2] <= TOUCH_INTERVAL_MS
            and not self.notifier.changed_since(user_id, "presence", known[0])
        ):
            # Every woken /sync comes here: nothing to write, and nothing to read either.
            return
        position = self.notifier.positions["presence"] if self.notifier is not None else 0
        current = await self.store.get(user_id)
        last_active = current.last_active_ts if current is not None else now
        if current is None or current.state != state:
            status_msg = current.status_msg if current is not None else None
            await self.store.set(user_id, state, status_msg, now)
            await self._changed(user_id)
            last_active = now
        elif now - current.last_active_ts > TOUCH_INTERVAL_MS:
            await self.store.touch(user_id, now)
            last_active = now
        self._from_sync[user_id] = (position, state, last_active)
        self._from_sync.move_to_end(user_id)
        while len(self._from_sync) > FROM_SYNC_CACHE_SIZE:
            self._from_sync.popitem(last=False)
