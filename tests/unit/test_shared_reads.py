"""storage/shared_reads.py: identical reads at once run once, and a failing or cancelled
read leaves no one with a wrong answer."""

from __future__ import annotations

import asyncio

import pytest

from storage.shared_reads import SharedReads


async def test_concurrent_and_recent_reads_share_one_load():
    shared = SharedReads(ttl_s=60)
    loads = 0
    gate = asyncio.Event()

    async def load():
        nonlocal loads
        loads += 1
        await gate.wait()
        return ["answer"]

    readers = [asyncio.create_task(shared.get(("k", 1), load)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    answers = await asyncio.gather(*readers)
    assert loads == 1 and all(a is answers[0] for a in answers)
    assert await shared.get(("k", 1), load) is answers[0]
    assert loads == 1
    await shared.get(("k", 2), load)
    assert loads == 2


async def test_entries_expire_and_the_oldest_go_first():
    shared = SharedReads(size=2, ttl_s=0)
    loads = []

    async def load(n):
        loads.append(n)
        return n

    await shared.get(1, lambda: load(1))
    await shared.get(1, lambda: load(1))
    assert loads == [1, 1]  # expired at once
    shared = SharedReads(size=2, ttl_s=60)
    for n in (1, 2, 3, 1):
        await shared.get(n, lambda n=n: load(n))
    assert loads[2:] == [1, 2, 3, 1]


async def test_an_error_reaches_every_waiter_and_is_not_kept():
    shared = SharedReads(ttl_s=60)
    gate = asyncio.Event()

    async def failing():
        await gate.wait()
        raise ValueError("no")

    readers = [asyncio.create_task(shared.get("k", failing)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*readers, return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results)

    async def fine():
        return 7

    assert await shared.get("k", fine) == 7


async def test_a_cancelled_reader_leaves_the_waiters_to_read_again():
    shared = SharedReads(ttl_s=60)
    started = asyncio.Event()
    calls = 0

    async def load():
        nonlocal calls
        calls += 1
        if calls == 1:
            started.set()
            await asyncio.sleep(30)
        return calls

    first = asyncio.create_task(shared.get("k", load))
    await started.wait()
    waiter = asyncio.create_task(shared.get("k", load))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(waiter, 5) == 2
    # A waiter cancelled itself does not cancel the reader it waited on.
    gate = asyncio.Event()

    async def slow():
        await gate.wait()
        return "done"

    reader = asyncio.create_task(shared.get("j", slow))
    await asyncio.sleep(0)
    impatient = asyncio.create_task(shared.get("j", slow))
    await asyncio.sleep(0)
    impatient.cancel()
    gate.set()
    assert await reader == "done"


class _Groups:
    """EventStore.state_groups over fixed maps, counting the groups each read asks."""

    def __init__(self, maps):
        self.maps = maps
        self.reads: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def state_groups(self, group_ids, types=None):
        self.reads.append(list(group_ids))
        await self.gate.wait()
        return {g: dict(self.maps[g]) for g in group_ids}


async def test_big_state_groups_are_kept_and_the_budget_holds():
    from storage.state_group_cache import MIN_ENTRIES, StateGroupCache

    big = {("m.room.member", f"@u{i}:hs"): f"$e{i}" for i in range(MIN_ENTRIES)}
    small = {("m.room.create", ""): "$c"}
    store = _Groups({1: big, 2: small, 3: dict(big), 4: dict(big)})
    cache = StateGroupCache(store, max_entries=2 * MIN_ENTRIES)  # type: ignore[arg-type]

    # Members' initial syncs at once: one read.
    store.gate.clear()
    readers = [asyncio.create_task(cache.resolve([1, 2, None])) for _ in range(5)]
    await asyncio.sleep(0)
    store.gate.set()
    answers = await asyncio.gather(*readers)
    assert store.reads == [[1, 2]]
    assert answers[0] == {1: big, 2: small} and all(a[1] is answers[0][1] for a in answers)

    # The big group is kept, the small one read again.
    assert (await cache.resolve([1, 2]))[1] is answers[0][1]
    assert store.reads[1:] == [[2]]
    # At most the budget: a third big group pushes the oldest out.
    await cache.resolve([3])
    await cache.resolve([4])
    store.reads.clear()
    assert await cache.resolve([1, 3, 4]) == {1: big, 3: big, 4: big}
    assert store.reads == [[1]]
