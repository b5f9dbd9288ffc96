"""How the server process runs Python's cyclic garbage collector.

With CPython's default thresholds, every 25% growth of the long-lived heap triggers a
full collection, and a full collection walks every tracked object while the event loop
stands still. A server holding 10,000 parked long-polls and warm caches tracks about two
million objects: each full collection then took 1.1–1.8 s and found nothing to free
(bench.scale longpolls_10k, 2026-12-06), and a fan-out to those polls (which replaces
every parked poll by a new one) triggered several of them in the middle of delivering.

Nearly everything the server frees, reference counting frees: reference cycles are rare
(the full collections of that run collected 0 objects but for a few dozen at shutdown).
So the policy is:

- the objects of start-up (modules, configuration, the application) are frozen out of
  every collection;
- young collections run every GEN0_THRESHOLD net allocations instead of every 700, so
  fewer objects of requests in flight are promoted to the older generations at all;
- a full collection runs on a clock, every FULL_COLLECTION_INTERVAL_S, instead of being
  triggered by growth; its pause is what `python_gc_pause_seconds{generation="2"}` shows.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from homeserver.metrics import gc_pause

logger = logging.getLogger(__name__)

GEN0_THRESHOLD = 50_000
GEN1_THRESHOLD = 20
# Full collections by growth never come due: gen2 is looked at after this many gen1 runs.
GEN2_THRESHOLD = 1_000_000
FULL_COLLECTION_INTERVAL_S = 600.0

_started: dict[int, float] = {}


def _time_collections(phase: str, info: dict) -> None:
    generation = info["generation"]
    if phase == "start":
        _started[generation] = time.perf_counter()
        return
    began = _started.pop(generation, None)
    if began is not None:
        gc_pause.labels(str(generation)).observe(time.perf_counter() - began)


def install() -> None:
    """Called once the server is built, before it listens."""
    if _time_collections not in gc.callbacks:
        gc.callbacks.append(_time_collections)
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)


async def collect_periodically(interval_s: float = FULL_COLLECTION_INTERVAL_S) -> None:
    """The full collections, on a clock (runs until cancelled)."""
    while True:
        await asyncio.sleep(interval_s)
        found = gc.collect()
        if found:
            logger.info("full garbage collection freed %d objects in cycles", found)
