"""What ten thousand parked /sync polls hold: one parsed filter for all who name the same
text (bounded against hostile inline filters), no set per lone waiter, one timer per
50 ms of timeouts."""

from __future__ import annotations

import asyncio

import pytest

from homeserver.http.errors import MatrixError
from homeserver.rooms.filtering import SyncFilters
from homeserver.slim_multimap import SlimMultiMap
from homeserver.sync.notifier import Notifier
from storage.streams import StreamChange

ELEMENT_FILTER = '{"room":{"state":{"lazy_load_members":true}}}'


class _Filters:
    """The stored filters of a FilterStore, counting the reads that reach it."""

    def __init__(self, stored: dict[tuple[str, int], str]):
        self.stored = stored
        self.reads = 0

    async def get(self, user_id: str, filter_id: int) -> str | None:
        self.reads += 1
        return self.stored.get((user_id, filter_id))


async def test_users_naming_the_same_filter_share_one_parsed_copy():
    store = _Filters({("@a:hs", 1): ELEMENT_FILTER, ("@b:hs", 7): ELEMENT_FILTER})
    filters = SyncFilters(store)  # type: ignore[arg-type]

    a = await filters.get("@a:hs", "1")
    b = await filters.get("@b:hs", "7")
    inline = await filters.get("@c:hs", ELEMENT_FILTER)
    assert a is b is inline
    assert a[1].lazy_load_members
    assert store.reads == 2
    # A known ID asks the database nothing more.
    assert await filters.get("@a:hs", "1") is a
    assert store.reads == 2
    # IDs are per user: b's ID names nothing of a's.
    with pytest.raises(MatrixError) as err:
        await filters.get("@a:hs", "7")
    assert err.value.errcode == "M_NOT_FOUND"
    for bad in ("0", "-1", "x"):
        with pytest.raises(MatrixError) as err:
            await filters.get("@a:hs", bad)
        assert err.value.errcode == "M_NOT_FOUND"
    assert (await filters.get("@a:hs", None))[1].timeline.limit is None


async def test_inline_filters_cannot_grow_the_cache_without_bound():
    filters = SyncFilters(_Filters({}))  # type: ignore[arg-type]
    filters.TEXTS = 8
    for i in range(50):
        spec, parsed = await filters.get("@h:hs", f'{{"room":{{"timeline":{{"limit":{i}}}}}}}')
        assert parsed.timeline.limit == i
    assert len(filters) == 8

    long_text = '{"room":{"not_rooms":[' + ",".join(['"!x"'] * 3000) + "]}}"
    assert len(long_text) > SyncFilters.MAX_TEXT
    first = await filters.get("@h:hs", long_text)
    assert first[1].rooms.not_rooms == ["!x"] * 3000
    # Parsed for each poll, never kept.
    assert await filters.get("@h:hs", long_text) is not first
    assert len(filters) == 8

    # A bad inline filter is refused with its errcode and leaves nothing behind.
    for bad, errcode in (("{nope", "M_INVALID_PARAM"), ('{"room": 3}', "M_BAD_JSON")):
        with pytest.raises(MatrixError) as err:
            await filters.get("@h:hs", bad)
        assert err.value.errcode == errcode
    assert len(filters) == 8


def test_a_lone_value_is_held_without_a_set():
    m: SlimMultiMap[str, int] = SlimMultiMap()
    m.add("@u", 1)
    assert m._items["@u"] == 1
    m.add("@u", 1)
    assert m.get("@u") == [1]
    m.add("@u", 2)
    assert sorted(m.get("@u")) == [1, 2]
    m.discard("@u", 1)
    assert m._items["@u"] == 2
    m.discard("@u", 3)
    assert m.get("@u") == [2]
    assert m.pop("@u") == [2] and "@u" not in m and m.pop("@u") == []
    m.discard("@nobody", 1)
    assert len(m) == 0


async def test_waits_share_timers_by_slot_and_each_still_times_out():
    notifier = Notifier()
    token = notifier.current_token()
    loop = asyncio.get_running_loop()
    started = loop.time()
    waits = [
        asyncio.create_task(notifier.wait({f"@u{i}", "!room"}, token, 0.01 + i / 10_000))
        for i in range(200)
    ]
    await asyncio.sleep(0)
    # 200 timeouts within 30 ms fall in at most two 50 ms slots: two timers, not 200.
    assert 1 <= len(notifier._timeouts) <= 2
    assert notifier.waiting == 200
    await asyncio.wait_for(asyncio.gather(*waits), 5)
    # None returned before its own timeout.
    assert loop.time() - started >= 0.01 + 199 / 10_000
    assert notifier._timeouts == {} and notifier.waiting == 0 and len(notifier._waiters) == 0


async def test_a_change_wakes_every_waiter_of_its_key_and_only_those():
    notifier = Notifier()
    token = notifier.current_token()
    room = [asyncio.create_task(notifier.wait({f"@u{i}", "!room"}, token, 30)) for i in range(3)]
    other = asyncio.create_task(notifier.wait({"@v", "!other"}, token, 30))
    await asyncio.sleep(0)
    notifier.on_change(StreamChange("events", 1, rooms={"!room"}))
    await asyncio.wait_for(asyncio.gather(*room), 5)
    assert not other.done()
    assert "!room" not in notifier._waiters and len(notifier._waiters.get("!other")) == 1
    notifier.stop()
    await asyncio.wait_for(other, 5)
