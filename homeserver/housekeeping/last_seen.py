"""Devices' last_seen_ts / last_seen_ip: noted in memory on every authenticated request and
written in one statement per flush, never one write per request.

Each process flushes what it saw itself (this is per-process memory, not a cluster task);
the statement only moves a device's time forward, so processes need no coordination. What
a crash loses is at most one flush interval of "last seen" times.
"""

from __future__ import annotations

import asyncio
import logging
import time

from homeserver.housekeeping.runner import cancel_and_wait
from storage.housekeeping import HousekeepingStore

logger = logging.getLogger(__name__)

# Past this many devices pending, a flush starts at once rather than at the next interval.
_MAX_PENDING = 50_000


class DeviceActivity:
    def __init__(self, store: HousekeepingStore, flush_interval_s: float):
        self.store = store
        self.flush_interval_s = flush_interval_s
        # (user_id, device_id) -> (ts ms, ip); the latest request wins.
        self._pending: dict[tuple[str, str], tuple[int, str | None]] = {}
        self._loop: asyncio.Task | None = None
        self._wake = asyncio.Event()

    def seen(self, user_id: str, device_id: str, ip: str | None) -> None:
        self._pending[(user_id, device_id)] = (int(time.time() * 1000), ip)
        if len(self._pending) >= _MAX_PENDING:
            self._wake.set()

    async def flush(self) -> int:
        """Writes what was seen since the last flush; how many devices."""
        pending, self._pending = self._pending, {}
        if not pending:
            return 0
        try:
            await self.store.record_last_seen(
                [(u, d, ts, ip) for (u, d), (ts, ip) in pending.items()]
            )
        except BaseException:
            # Put them back (newer sightings win) so the next flush tries again.
            for key, value in pending.items():
                self._pending.setdefault(key, value)
            raise
        return len(pending)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stops the loop and writes what is left (the database must still be open)."""
        await cancel_and_wait(self._loop)
        self._loop = None
        try:
            await self.flush()
        except Exception:
            logger.exception("could not write devices' last_seen at stop")

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_interval_s)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.flush()
            except Exception:
                logger.exception("could not write devices' last_seen")
