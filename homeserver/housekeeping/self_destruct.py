"""MSC2228 self-destructing events ("ephemeral messages"): a message whose content names
`org.matrix.self_destruct_after` (a timestamp in ms) has its content redacted by this
server once that time has passed, as Synapse does behind `enable_ephemeral_messages`.

Off by default (`ephemeral_messages: true` turns it on): the MSC is unmerged, and the
expiry is each server's own doing (no redaction event is sent or federated; other servers
and clients that fetched the event keep their copies).

When on, every non-state event stored with such a timestamp, sent here or received over
federation, gets an `event_expiry` row in the event's own commit. The housekeeping task
`self_destruct` rewrites the due events to their redacted form (room version's redaction
algorithm; hashes and signatures stay, as erasure.py does), drops their search-index and
relation rows, and deletes the expiry rows, all in one transaction per batch: any process
may run it, a restart loses nothing. The task runs every `housekeeping.self_destruct_interval_s`,
and sooner: a process that stores an expiring event, or that ran the task, sets a timer
for the next expiry it knows of and then runs the task through the runner (its lock keeps
one process at a time); the period is the backstop for timers lost with a process.

Gap: as for redactions, another process's event cache may serve the unredacted copy until
it evicts it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from homeserver.housekeeping.erasure import redacted_copy
from homeserver.housekeeping.runner import now_ms
from storage.events import PersistItem
from storage.housekeeping import ExpiryStore, add_event_expiries

logger = logging.getLogger(__name__)

SELF_DESTRUCT_AFTER = "org.matrix.self_destruct_after"
# Events rewritten per transaction.
_BATCH = 200
# Timers further away than this are left to the periodic run (a process may hold few).
_MAX_TIMER_S = 3600.0


def expiry_of(event: dict[str, Any]) -> int | None:
    """The event's self-destruct time, or None: state events never expire (as Synapse;
    their content is the room's state), nor does a value that is not an integer."""
    if "state_key" in event:
        return None
    content = event.get("content")
    value = content.get(SELF_DESTRUCT_AFTER) if isinstance(content, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


class SelfDestruct:
    def __init__(
        self,
        store: ExpiryStore,
        invalidate_event: Callable[[str], None],
        run_task: Callable[[], Awaitable[Any]],
        enabled: bool,
    ):
        self.store = store
        self.invalidate_event = invalidate_event
        # Runs the `self_destruct` task through the housekeeping runner (its lock).
        self.run_task = run_task
        self.enabled = enabled
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0
        self._stopped = False

    def expiries(self, items: Sequence[PersistItem]) -> list[tuple[str, int]]:
        """(event_id, expiry_ts) of the events of a commit that self-destruct."""
        if not self.enabled:
            return []
        return [(it.event_id, ts) for it in items if (ts := expiry_of(it.event)) is not None]

    async def record(self, conn, expiries: Sequence[tuple[str, int]]) -> None:
        """In the events' commit."""
        if expiries:
            await add_event_expiries(conn, expiries)

    def schedule(self, at_ms: int) -> None:
        """Runs the task at `at_ms` (or now), unless a run is already due sooner."""
        if not self.enabled or self._stopped:
            return
        if self._timer is not None and self._timer_at <= at_ms:
            return
        delay = max(0.0, (at_ms - now_ms()) / 1000)
        if delay > _MAX_TIMER_S:
            return
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = at_ms
        self._timer = loop.call_later(delay, lambda: loop.create_task(self._fire()))

    async def _fire(self) -> None:
        self._timer = None
        try:
            await self.run_task()
        except Exception:
            logger.exception("self_destruct run failed")

    async def start(self) -> None:
        """Sets the timer for the first expiry (those missed while no process ran are due
        at once)."""
        if self.enabled:
            following = await self.store.next_expiry()
            if following is not None:
                self.schedule(following)

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def run(self, now: int) -> int:
        """The housekeeping task: redacts every event due by `now`; how many."""
        if not self.enabled:
            return 0
        done = 0
        while True:
            rows = await self.store.due(now, _BATCH)
            if not rows:
                break
            stored = [r for r in rows if r.json]
            await self.store.expire(
                [redacted_copy(r) for r in stored], [r.event_id for r in rows if not r.json]
            )
            for r in stored:
                self.invalidate_event(r.event_id)
            done += len(stored)
            if len(rows) < _BATCH:
                break
        following = await self.store.next_expiry()
        if following is not None:
            self.schedule(following)
        return done
