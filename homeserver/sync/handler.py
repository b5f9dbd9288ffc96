"""/sync: build the response from stream positions, or wait until there is something to say."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from homeserver.http.auth import Requester
from homeserver.jsonutil import dumps, loads
from homeserver.presence.service import Presence
from homeserver.rooms.filtering import ParsedFilter, SyncFilters
from homeserver.sync.caches import SyncCaches
from homeserver.sync.context import SyncContext
from homeserver.sync.notifier import Notifier
from homeserver.sync.streams import StreamProvider
from homeserver.tokens import decode_sync_token, encode_sync_token
from storage.filters import FilterStore

# A waiting /sync looks this often whether its client is still connected.
CONNECTION_CHECK_S = 5.0
# Woken long-polls rebuilding their answers at once. One message to a big room wakes every
# member's poll; built all together they share the database pool query by query and all
# finish at the end, built a few at a time the first answers leave at once.
WOKEN_BUILDS = 16


def _drop_unchanged_rooms(ctx: SyncContext, response: dict[str, Any]) -> None:
    join = response.get("rooms", {}).get("join", {})
    for room_id in list(join):
        entry = join[room_id]
        if room_id in ctx.newly_joined_room_ids:
            continue
        if any(
            entry.get(k, {}).get("events")
            for k in ("timeline", "state", "ephemeral", "account_data")
        ):
            continue
        del join[room_id]


def _is_empty(response: dict[str, Any]) -> bool:
    rooms = response.get("rooms", {})
    if any(rooms.get(k) for k in ("join", "invite", "leave", "knock")):
        return False
    for key in ("presence", "account_data", "to_device"):
        if response.get(key, {}).get("events"):
            return False
    lists = response.get("device_lists", {})
    return not (lists.get("changed") or lists.get("left"))


def _trim_device_lists(response: dict[str, Any]) -> None:
    """Leaves out empty `changed` / `left` lists, and `device_lists` when both are: all
    optional in the spec, and left out by Synapse too; some clients (SyTest among them)
    take a `changed` list that is present as news."""
    lists = response.get("device_lists")
    if lists is None:
        return
    for key in ("changed", "left"):
        if not lists.get(key):
            lists.pop(key, None)
    if not lists:
        del response["device_lists"]


class SyncHandler:
    def __init__(
        self,
        filters: FilterStore,
        presence: Presence,
        notifier: Notifier,
        caches: SyncCaches,
        providers: Sequence[StreamProvider],
        max_timeout_ms: int,
    ):
        self.filters = SyncFilters(filters)
        self.presence = presence
        self.notifier = notifier
        self.caches = caches
        self.providers = providers
        self.max_timeout_ms = max_timeout_ms
        self._woken_builds = asyncio.Semaphore(WOKEN_BUILDS)

    async def _build(
        self,
        requester: Requester,
        since: dict[str, int] | None,
        full_state: bool,
        sync_filter: ParsedFilter,
    ) -> tuple[SyncContext, dict[str, Any]]:
        ctx = SyncContext(
            user_id=requester.user_id,
            device_id=requester.device_id,
            since=since,
            now=self.notifier.current_token(),
            full_state=full_state,
            filter=sync_filter[0],
            sync_filter=sync_filter[1],
        )
        response: dict[str, Any] = {
            "account_data": {"events": []},
            "presence": {"events": []},
            "to_device": {"events": []},
            "device_lists": {"changed": [], "left": []},
            "device_one_time_keys_count": {},
        }
        for provider in self.providers:
            await provider.fill(ctx, response)
        if since is not None and not full_state:
            _drop_unchanged_rooms(ctx, response)
        _trim_device_lists(response)
        response["next_batch"] = encode_sync_token(ctx.now)
        return ctx, response

    async def sync(
        self,
        requester: Requester,
        since_token: str | None,
        timeout_ms: int,
        full_state: bool,
        filter_value: str | None,
        set_presence: str | None,
        connected: Callable[[], bool] = lambda: True,
    ) -> dict[str, Any]:
        """`connected()`: whether the client still waits for the answer."""
        sync_filter = await self.filters.get(requester.user_id, filter_value)
        since = decode_sync_token(since_token) if since_token else None
        # No set_presence means "online" (spec); the presence service skips redundant writes.
        await self.presence.set_from_sync(requester.user_id, set_presence)
        deadline = time.monotonic() + min(timeout_ms, self.max_timeout_ms) / 1000
        streams = sync_filter[1].wake_streams
        if since_token and since is not None and not full_state:
            # A parked poll holds its token as text, not as a dict (a few hundred bytes
            # a poll, ten thousand polls a process).
            since = None
            woken = await self._wait_quietly(
                requester.user_id, since_token, deadline, connected, streams
            )
            since = decode_sync_token(since_token)
            if woken:
                async with self._woken_builds:
                    ctx, response = await self._build(requester, since, full_state, sync_filter)
            else:
                ctx, response = await self._build(requester, since, full_state, sync_filter)
        else:
            ctx, response = await self._build(requester, since, full_state, sync_filter)
        while since is not None and not full_state and _is_empty(response):
            # Nothing to say yet. A parked poll holds only what it waits on: its keys, the
            # position its answer covers and that (empty) answer as text, not the context
            # and the answer's dicts (about 2 KB a poll, ten thousand polls a process).
            keys = (requester.user_id, *ctx.joined_room_ids)
            now, empty = response["next_batch"], dumps(response)
            del ctx, response
            if not await self._park(keys, now, deadline, connected, streams):
                return loads(empty)
            async with self._woken_builds:
                ctx, response = await self._build(requester, since, full_state, sync_filter)
        return response

    def _time_left(self, deadline: float, connected: Callable[[], bool]) -> float:
        """Seconds a poll may still wait; none once its client left (aiohttp does not
        cancel handlers on disconnect) or the server stops: nobody needs the answer, and
        what the poll holds is freed."""
        if self.notifier.stopped or not connected():
            return 0.0
        return deadline - time.monotonic()

    async def _park(
        self,
        keys: tuple[str, ...],
        now: str,
        deadline: float,
        connected: Callable[[], bool],
        streams: frozenset[str] | None,
    ) -> bool:
        """Waits until something after `now` happened to `keys` on `streams` (all when
        None) (True), or the poll ran out of time, its client left or the server stops
        (False)."""
        while True:
            remaining = self._time_left(deadline, connected)
            if remaining <= 0:
                return False
            # Wait from what the empty answer covered, so a change we could not see (say,
            # in a room's ephemeral stream we filter out) does not spin the loop; in
            # slices, to notice an abandoned poll long before its timeout.
            await self.notifier.wait(
                keys, decode_sync_token(now), min(remaining, CONNECTION_CHECK_S), streams
            )
            if not self.notifier.quiet_since(keys, decode_sync_token(now), streams):
                return True

    async def _wait_quietly(
        self,
        user_id: str,
        since: str,
        deadline: float,
        connected: Callable[[], bool],
        streams: frozenset[str] | None,
    ) -> bool:
        """Parks a poll that the notifier knows has nothing new since its token, without
        building the empty answer first: a client re-polls right after each answer, so
        after a message to a big room every member's next poll arrives while the others
        are still being answered. Returns True when woken by a change (the caller builds),
        False at once when the notifier cannot vouch for the token, or when the poll ran
        out of time, the client left or the server stops (the caller builds the answer
        then, empty or not)."""
        while True:
            memberships = await self.caches.memberships(user_id)
            keys = (user_id, *(r for r, (m, _, _) in memberships.items() if m == "join"))
            if not self.notifier.quiet_since(keys, decode_sync_token(since), streams):
                return True
            remaining = self._time_left(deadline, connected)
            if remaining <= 0:
                return False
            await self.notifier.wait(
                keys, decode_sync_token(since), min(remaining, CONNECTION_CHECK_S), streams
            )
