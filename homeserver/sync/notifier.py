"""Wakes the /sync long-polls that a change concerns, and nothing else.

Keys are room IDs and user IDs. A change names the keys it concerns; a waiting /sync
registered under its user's ID and the IDs of the rooms it is in. Changes arrive from
this process's commits and, through LISTEN/NOTIFY, from every other process.

The notifier also remembers, per key, the last position at which each stream changed for
it (since this process started). /sync uses that to skip rooms with nothing new without
asking the database.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Collection, Iterable

from homeserver.metrics import sync_longpolls
from homeserver.slim_multimap import SlimMultiMap
from storage.streams import STREAMS, StreamChange

# Waits time out at the end of the 50 ms slot their timeout falls in, one timer per slot:
# ten thousand parked polls each re-park every few seconds, and a timer handle of its own
# for each cost about 600 bytes per poll.
TIMEOUT_SLOT_S = 0.05


def state_key_of(room_id: str) -> str:
    """The notifier key that moves when a room's state changes (not on every message):
    caches of things derived from room state (member counts, heroes, power levels) are
    valid until it moves."""
    return "state|" + room_id


class Notifier:
    def __init__(self):
        self.positions: dict[str, int] = dict.fromkeys(STREAMS, 0)
        # Positions at start: below these, we know nothing about which key changed.
        self.start_positions: dict[str, int] = dict(self.positions)
        self._last_change: dict[str, dict[str, int]] = {}
        self._waiters: SlimMultiMap[str, asyncio.Future] = SlimMultiMap()
        self._all_waiters: set[asyncio.Future] = set()
        # The streams a waiter wakes for, when it named them (see wait).
        self._waiter_streams: dict[asyncio.Future, frozenset[str]] = {}
        # Per stream, the last position whose change named no keys (see on_change).
        self._everyone: dict[str, int] = {}
        # Timeout slot -> the waits that time out at its end (see TIMEOUT_SLOT_S).
        self._timeouts: dict[int, list[asyncio.Future]] = {}
        self.stopped = False

    def start(self, positions: dict[str, int]) -> None:
        self.positions.update(positions)
        self.start_positions = dict(self.positions)

    def stop(self) -> None:
        """Shutting down: waiting long-polls answer now, and later ones do not wait."""
        self.stopped = True
        for fut in list(self._all_waiters):
            if not fut.done():
                fut.set_result(None)

    @property
    def waiting(self) -> int:
        """How many long-polls wait now."""
        return len(self._all_waiters)

    def current_token(self) -> dict[str, int]:
        return dict(self.positions)

    def on_change(self, change: StreamChange) -> None:
        stream = change.stream
        if change.position > self.positions.get(stream, 0):
            self.positions[stream] = change.position
        if change.everyone:
            # Too many keys to list: every key counts as changed at this position.
            self._everyone[stream] = max(self._everyone.get(stream, 0), change.position)
            self._wake(self._all_waiters, stream)
            return
        for key in (*change.rooms, *change.users):
            per_stream = self._last_change.setdefault(key, {})
            if change.position > per_stream.get(stream, 0):
                per_stream[stream] = change.position
            if key in self._waiters:
                self._wake(self._waiters.get(key), stream)

    def _wake(self, waiters: Iterable[asyncio.Future], stream: str | None = None) -> None:
        for fut in list(waiters):
            if fut.done():
                continue
            streams = self._waiter_streams.get(fut)
            if stream is None or streams is None or stream in streams:
                fut.set_result(None)

    def changed_since(self, key: str, stream: str, position: int) -> bool:
        """False only when we know that `key` had no change on `stream` after `position`."""
        if position < self.start_positions.get(stream, 0):
            return True
        if self._everyone.get(stream, 0) > position:
            return True
        return self._last_change.get(key, {}).get(stream, 0) > position

    def changed_among(self, keys: Iterable[str], stream: str, position: int) -> list[str]:
        """Those of `keys` that changed_since would name, in their order: what holds for
        every key is checked once (a /sync over 500 rooms asks this per room and stream)."""
        if position < self.start_positions.get(stream, 0) or (
            self._everyone.get(stream, 0) > position
        ):
            return list(keys)
        last = self._last_change
        return [k for k in keys if (c := last.get(k)) is not None and c.get(stream, 0) > position]

    def quiet_since(
        self, keys: Iterable[str], token: dict[str, int], streams: frozenset[str] | None = None
    ) -> bool:
        """True only when we know that nothing happened to `keys`, on any stream (of
        `streams`, when given), after `token` (a token from before this process started is
        never known to be quiet)."""
        if any(token.get(stream, 0) < start for stream, start in self.start_positions.items()):
            return False
        return not self._any_change(keys, token, streams)

    def _any_change(
        self, keys: Iterable[str], token: dict[str, int], streams: frozenset[str] | None
    ) -> bool:
        def counts(stream: str) -> bool:
            return streams is None or stream in streams

        if any(
            pos > token.get(stream, 0) and counts(stream) for stream, pos in self._everyone.items()
        ):
            return True
        for key in keys:
            for stream, pos in self._last_change.get(key, {}).items():
                if pos > token.get(stream, 0) and counts(stream):
                    return True
        return False

    async def wait(
        self,
        keys: Collection[str],
        token: dict[str, int],
        timeout: float,
        streams: frozenset[str] | None = None,
    ) -> None:
        """Returns when something after `token` happened to one of `keys` (on one of
        `streams`, when given), or on timeout."""
        if timeout <= 0 or self.stopped or self._any_change(keys, token, streams):
            return
        del token  # not held while parked: ten thousand parked polls
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        for key in keys:
            self._waiters.add(key, fut)
        self._all_waiters.add(fut)
        if streams is not None:
            self._waiter_streams[fut] = streams
        sync_longpolls.inc()
        self._time_out(loop, fut, timeout)
        try:
            await fut
        finally:
            sync_longpolls.dec()
            self._all_waiters.discard(fut)
            self._waiter_streams.pop(fut, None)
            for key in keys:
                self._waiters.discard(key, fut)

    def _time_out(self, loop: asyncio.AbstractEventLoop, fut: asyncio.Future, after: float) -> None:
        """Settles `fut` at the end of the slot `after` seconds from now falls in. Not
        wait_for (a task and a wrapper per wait) nor call_later (a handle per wait)."""
        slot = math.ceil((loop.time() + after) / TIMEOUT_SLOT_S)
        due = self._timeouts.get(slot)
        if due is None:
            due = self._timeouts[slot] = []
            loop.call_at(slot * TIMEOUT_SLOT_S, self._settle_slot, slot)
        due.append(fut)

    def _settle_slot(self, slot: int) -> None:
        for fut in self._timeouts.pop(slot, ()):
            if not fut.done():
                fut.set_result(None)
