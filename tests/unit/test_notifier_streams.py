"""A long-poll that names its streams wakes only for changes on them (sliding sync waits
for room events, not for typing it did not ask for)."""

from __future__ import annotations

import asyncio

from homeserver.sync.notifier import Notifier
from storage.streams import StreamChange


async def test_a_wait_naming_streams_ignores_the_others():
    notifier = Notifier()
    token = notifier.current_token()
    waiting = asyncio.create_task(
        notifier.wait({"!room"}, token, 30, frozenset({"events", "receipts"}))
    )
    await asyncio.sleep(0)  # registered
    notifier.on_change(StreamChange("typing", 1, rooms={"!room"}))
    notifier.on_change(StreamChange("presence", 1, everyone=True))
    await asyncio.sleep(0)
    assert not waiting.done()
    notifier.on_change(StreamChange("events", 1, rooms={"!room"}))
    await asyncio.wait_for(waiting, 5)


async def test_a_wait_returns_at_once_for_a_change_it_missed_on_its_streams():
    notifier = Notifier()
    token = notifier.current_token()
    notifier.on_change(StreamChange("typing", 1, rooms={"!room"}))
    notifier.on_change(StreamChange("events", 1, rooms={"!room"}))
    await asyncio.wait_for(notifier.wait({"!room"}, token, 30, frozenset({"events"})), 5)


async def test_a_wait_without_streams_wakes_for_any():
    notifier = Notifier()
    waiting = asyncio.create_task(notifier.wait({"@u"}, notifier.current_token(), 30))
    await asyncio.sleep(0)
    notifier.on_change(StreamChange("typing", 1, users={"@u"}))
    await asyncio.wait_for(waiting, 5)


async def test_a_wait_times_out_and_a_cancelled_one_leaves_nothing_behind():
    notifier = Notifier()
    token = notifier.current_token()
    # Times out with nothing changed, and its registration is gone.
    await asyncio.wait_for(notifier.wait({"@u", "!room"}, token, 0.01), 5)
    assert len(notifier._waiters) == 0 and notifier._all_waiters == set()

    # A poll whose client went away is cancelled: nothing stays registered, and a later
    # change does not trip over its future.
    waiting = asyncio.create_task(notifier.wait({"@u"}, token, 30, frozenset({"events"})))
    await asyncio.sleep(0)
    assert "@u" in notifier._waiters and len(notifier._waiters) == 1
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert waiting.cancelled()
    assert len(notifier._waiters) == 0 and notifier._all_waiters == set()
    assert notifier._waiter_streams == {}
    notifier.on_change(StreamChange("events", 1, users={"@u"}))


def test_quiet_since_vouches_only_for_what_it_saw():
    """/sync parks a poll without building its answer only when the notifier knows that
    nothing happened to its keys since its token, on any stream."""
    notifier = Notifier()
    notifier.start({"events": 10, "typing": 3})
    token = notifier.current_token()
    assert notifier.quiet_since({"@u", "!room"}, token)
    # From before this process started: changes then are unknown here.
    assert not notifier.quiet_since({"@u"}, {**token, "events": 9})
    notifier.on_change(StreamChange("typing", 4, rooms={"!other"}))
    assert notifier.quiet_since({"@u", "!room"}, token)
    notifier.on_change(StreamChange("typing", 5, rooms={"!room"}))
    assert not notifier.quiet_since({"@u", "!room"}, token)
    assert notifier.quiet_since({"@u", "!room"}, notifier.current_token())
    notifier.on_change(StreamChange("presence", 1, everyone=True))
    assert not notifier.quiet_since({"@u"}, {**notifier.current_token(), "presence": 0})


def test_changed_among_names_what_changed_since_would():
    """The batch form /sync and sliding sync use over a user's rooms: it must agree with
    the per-key check, including before the process's start and after a change to all."""
    notifier = Notifier()
    notifier.start({"receipts": 10})
    notifier.on_change(StreamChange("receipts", 12, rooms={"!a"}))
    notifier.on_change(StreamChange("receipts", 14, rooms={"!b"}))
    notifier.on_change(StreamChange("typing", 15, rooms={"!c"}))
    keys = ["!c", "!b", "!a", "!never"]

    def agrees(position: int) -> list[str]:
        among = notifier.changed_among(keys, "receipts", position)
        assert among == [k for k in keys if notifier.changed_since(k, "receipts", position)]
        return among

    assert agrees(11) == ["!b", "!a"]
    assert agrees(13) == ["!b"]
    assert agrees(14) == []
    assert agrees(9) == keys  # before this process started: nothing is known quiet
    notifier.on_change(StreamChange("receipts", 16, everyone=True))
    assert agrees(15) == keys
