"""The invalidated cache's rules (homeserver/user_cache.py), without a database: a fill that
overlaps an invalidation is not kept, nothing is served or filled while notifications
cannot arrive, and the cache stays within its size."""

from __future__ import annotations

import asyncio

from homeserver.user_cache import InvalidatedCache, changes_cached


def _cache(size: int = 10, listening: list[bool] | None = None) -> InvalidatedCache:
    state = listening if listening is not None else [True]
    return InvalidatedCache("test", size, lambda: state[0])


async def test_a_fill_that_overlaps_an_invalidation_is_not_kept():
    cache = _cache()
    loading = asyncio.Event()
    release = asyncio.Event()
    loads = []

    async def slow_load():
        loads.append(1)
        loading.set()
        await release.wait()
        return "alice", "before logout"

    task = asyncio.create_task(cache.get("token", slow_load))
    await loading.wait()
    # The logout commits (and its notification arrives) while the read is in flight.
    cache.invalidate("alice")
    release.set()
    assert await task == "before logout"  # this request read before the change
    assert len(cache) == 0

    async def fresh_load():
        loads.append(1)
        return "alice", "after"

    assert await cache.get("token", fresh_load) == "after"
    assert await cache.get("token", fresh_load) == "after"
    assert len(loads) == 2  # the second read of "after" came from the cache


async def test_invalidation_drops_every_entry_of_a_tag_and_only_those():
    cache = _cache()

    def loader(tag, value):
        async def load():
            return tag, value

        return load

    await cache.get("t1", loader("alice", 1))
    await cache.get("t2", loader("alice", 2))
    await cache.get("t3", loader("bob", 3))
    cache.invalidate("alice")
    assert await cache.get("t1", loader("alice", 10)) == 10
    assert await cache.get("t2", loader("alice", 20)) == 20
    assert await cache.get("t3", loader("bob", 30)) == 3


async def test_nothing_is_served_or_filled_while_not_listening():
    listening = [True]
    cache = _cache(listening=listening)
    value = ["one"]

    async def load():
        return "alice", value[0]

    assert await cache.get("token", load) == "one"
    listening[0] = False
    value[0] = "two"
    assert await cache.get("token", load) == "two"  # not the cached "one"
    assert len(cache) == 1  # and "two" was not stored
    cache.clear()  # what reconnecting does
    listening[0] = True
    assert await cache.get("token", load) == "two"


async def test_not_found_is_never_cached_and_size_is_bounded():
    cache = _cache(size=3)
    calls = []

    async def missing():
        calls.append(1)
        return None

    assert await cache.get("unknown", missing) is None
    assert await cache.get("unknown", missing) is None
    assert len(calls) == 2
    for i in range(5):

        async def load(i=i):
            return f"user{i}", i

        await cache.get(f"t{i}", load)
    assert len(cache) == 3


def test_credential_changing_requests_are_recognised():
    assert changes_cached("POST", "/_matrix/client/v3/logout")
    assert changes_cached("POST", "/_matrix/client/v3/logout/all")
    assert changes_cached("DELETE", "/_matrix/client/v3/devices/ABC")
    assert changes_cached("POST", "/_matrix/client/v3/delete_devices")
    assert changes_cached("POST", "/_matrix/client/r0/account/password")
    assert changes_cached("POST", "/_matrix/client/v3/account/deactivate")
    assert changes_cached("POST", "/_matrix/client/v3/keys/upload")
    assert changes_cached("PUT", "/_synapse/admin/v2/users/@a:b")
    assert changes_cached("GET", "/_matrix/client/unstable/account_validity/renew")
    assert not changes_cached("GET", "/_matrix/client/v3/devices/ABC")
    assert not changes_cached("GET", "/_synapse/admin/v2/users/@a:b")
    assert not changes_cached("PUT", "/_matrix/client/v3/rooms/!r:b/send/m.room.message/1")
