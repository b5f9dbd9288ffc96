"""Sending to one federation destination (or one appservice) is one process's job at a
time, decided by a lease row in the shared database, not by configuration: two stores
with their own pools (two processes) on one database contend for it."""

from __future__ import annotations

from storage.appservice import AppServiceStore
from storage.database import Database
from storage.federation_queue import FederationQueueStore

LEASE_MS = 120_000
NOW = 1_700_000_000_000


async def _contend(first, second, key: str) -> None:
    assert await first.claim(key, "a", NOW, LEASE_MS)
    # Held by a: b is refused, a renews.
    assert not await second.claim(key, "b", NOW + 1, LEASE_MS)
    assert await first.claim(key, "a", NOW + 2, LEASE_MS)
    # Released by a: b takes it, and now a is refused.
    await first.release(key, "a")
    assert await second.claim(key, "b", NOW + 3, LEASE_MS)
    assert not await first.claim(key, "a", NOW + 4, LEASE_MS)
    # b stops without releasing (a crash): a takes over once the lease runs out, not before.
    assert not await first.claim(key, "a", NOW + 3 + LEASE_MS - 1, LEASE_MS)
    assert await first.claim(key, "a", NOW + 3 + LEASE_MS + 1, LEASE_MS)
    # A release by the process that lost the lease changes nothing.
    await second.release(key, "b")
    assert not await second.claim(key, "b", NOW + 3 + LEASE_MS + 2, LEASE_MS)


async def test_two_processes_share_a_destination_by_lease(fresh_dsn):
    dbs = [Database(fresh_dsn, 1, 2), Database(fresh_dsn, 1, 2)]
    for db in dbs:
        await db.open()
    try:
        await _contend(*(FederationQueueStore(db) for db in dbs), "peer.example")
        # release_all (a stopping process) frees only its own leases.
        a, b = (FederationQueueStore(db) for db in dbs)
        assert await b.claim("other.example", "b", NOW, LEASE_MS)
        await a.release_all("a")
        assert await b.claim("peer.example", "b", NOW + 10, LEASE_MS)
        assert not await a.claim("other.example", "a", NOW + 10, LEASE_MS)
    finally:
        for db in dbs:
            await db.close()


async def test_two_processes_share_an_appservice_by_lease(fresh_dsn):
    dbs = [Database(fresh_dsn, 1, 2), Database(fresh_dsn, 1, 2)]
    for db in dbs:
        await db.open()
    try:
        await _contend(*(AppServiceStore(db) for db in dbs), "bridge")
    finally:
        for db in dbs:
            await db.close()
