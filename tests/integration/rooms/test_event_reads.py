"""storage.events.EventStore.get_events: readers of an event that another reader is
reading from the database wait for that read (every /sync woken by a message committed
in another process asks for it at once), and a change while it reads is not cached."""

from __future__ import annotations

import asyncio

from nio import RoomSendResponse


class GatedFetches:
    """The store's database, counting the reads of one event and holding them until
    let go."""

    def __init__(self, db, event_id: str):
        self.db = db
        self.event_id = event_id
        self.reads = 0
        self.gate = asyncio.Event()

    async def fetch(self, query: str, *args):
        if "FROM events" in query and args and self.event_id in args[0]:
            self.reads += 1
            await self.gate.wait()
        return await self.db.fetch(query, *args)

    def __getattr__(self, name: str):
        return getattr(self.db, name)


async def _uncached_message(server) -> str:
    alice = await server.client("alice")
    room_id = (await alice.room_create(name="r")).room_id
    sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "x"})
    assert isinstance(sent, RoomSendResponse)
    return sent.event_id


def _gated(store, event_id: str, monkeypatch) -> GatedFetches:
    """Reads of the event held; dropped from the cache (no await until the readers
    start: no background reader can cache it again meanwhile)."""
    gated = GatedFetches(store.db, event_id)
    monkeypatch.setattr(store, "db", gated)
    store.cache.invalidate(event_id)
    return gated


async def test_concurrent_readers_of_an_event_share_one_read(server, monkeypatch):
    store = server.hs.event_store
    event_id = await _uncached_message(server)
    gated = _gated(store, event_id, monkeypatch)
    readers = [asyncio.create_task(store.get_events([event_id])) for _ in range(5)]
    await asyncio.sleep(0.05)
    gated.gate.set()
    answers = await asyncio.gather(*readers)
    assert gated.reads == 1
    assert all(a[event_id] is answers[0][event_id] for a in answers)
    assert store.cache.get(event_id) is answers[0][event_id]
    assert not store.cache.loading


async def test_a_cancelled_read_leaves_its_waiters_to_read_again(server, monkeypatch):
    store = server.hs.event_store
    event_id = await _uncached_message(server)
    gated = _gated(store, event_id, monkeypatch)
    first = asyncio.create_task(store.get_events([event_id]))
    await asyncio.sleep(0.05)
    waiter = asyncio.create_task(store.get_events([event_id]))
    await asyncio.sleep(0.05)
    first.cancel()
    gated.gate.set()
    assert (await waiter)[event_id].event_id == event_id
    assert first.cancelled() and not store.cache.loading


async def test_an_event_invalidated_while_read_is_not_cached(server, monkeypatch):
    store = server.hs.event_store
    event_id = await _uncached_message(server)
    gated = _gated(store, event_id, monkeypatch)
    reader = asyncio.create_task(store.get_events([event_id]))
    await asyncio.sleep(0.05)
    store.cache.invalidate(event_id)  # e.g. a redaction committed meanwhile
    later = asyncio.create_task(store.get_events([event_id]))
    await asyncio.sleep(0.05)
    gated.gate.set()
    await asyncio.gather(reader, later)
    assert gated.reads == 2  # the later reader did not take the earlier read's answer
    assert store.cache.get(event_id) is (await later)[event_id]
