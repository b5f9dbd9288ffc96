"""Typing and receipts reach other members through /sync (matrix-nio)."""

from __future__ import annotations

import asyncio

from nio import (
    ReceiptEvent,
    RoomReadMarkersResponse,
    RoomTypingResponse,
    TypingNoticeEvent,
    UpdateReceiptMarkerResponse,
)


async def _pair(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    room_id = (await alice.room_create(name="r", invite=[bob.user_id])).room_id
    await bob.join(room_id)
    await bob.sync(timeout=0)
    return alice, bob, room_id


async def test_typing_wakes_waiting_sync(server):
    alice, bob, room_id = await _pair(server)
    poll = asyncio.create_task(bob.sync(timeout=20_000, since=bob.next_batch))
    await asyncio.sleep(0.1)
    assert isinstance(await alice.room_typing(room_id, True, timeout=10_000), RoomTypingResponse)
    sync = await asyncio.wait_for(poll, 15)
    typing = [e for e in sync.rooms.join[room_id].ephemeral if isinstance(e, TypingNoticeEvent)]
    assert typing and typing[-1].users == [alice.user_id]
    await alice.room_typing(room_id, False)
    sync = await bob.sync(timeout=5_000, since=bob.next_batch)
    typing = [e for e in sync.rooms.join[room_id].ephemeral if isinstance(e, TypingNoticeEvent)]
    assert typing and typing[-1].users == []


async def test_receipts_and_read_markers(server):
    alice, bob, room_id = await _pair(server)
    sent = await alice.room_send(
        room_id, "m.room.message", {"msgtype": "m.text", "body": "read me"}
    )
    sync = await bob.sync(timeout=0, since=bob.next_batch)
    assert sync.rooms.join[room_id].unread_notifications.notification_count == 1
    resp = await bob.update_receipt_marker(room_id, sent.event_id)
    assert isinstance(resp, UpdateReceiptMarkerResponse)
    sync = await alice.sync(timeout=0)
    receipts = [
        r
        for e in sync.rooms.join[room_id].ephemeral
        if isinstance(e, ReceiptEvent)
        for r in e.receipts
    ]
    assert any(
        r.event_id == sent.event_id and r.user_id == bob.user_id and r.receipt_type == "m.read"
        for r in receipts
    )
    sync = await bob.sync(timeout=0)
    assert sync.rooms.join[room_id].unread_notifications.notification_count == 0

    # A private receipt is seen by its owner only.
    more = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "more"})
    resp = await bob.room_read_markers(
        room_id,
        fully_read_event=more.event_id,
        read_event=more.event_id,
        private_read_event=more.event_id,
    )
    assert isinstance(resp, RoomReadMarkersResponse)
    status, _ = await server.request(
        "POST",
        f"/_matrix/client/v3/rooms/{room_id}/receipt/m.read/{more.event_id}",
        token=bob.access_token,
        json={"thread_id": "main"},
    )
    assert status == 200
    status, body = await server.request(
        "POST",
        f"/_matrix/client/v3/rooms/{room_id}/receipt/m.bogus/{more.event_id}",
        token=bob.access_token,
        json={},
    )
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    rows = await server.db.fetch(
        "SELECT receipt_type FROM receipts WHERE user_id = $1 AND event_id = $2",
        bob.user_id,
        more.event_id,
    )
    assert {r["receipt_type"] for r in rows} == {"m.read", "m.read.private"}
    fully = await server.db.fetchval(
        "SELECT content FROM account_data WHERE user_id = $1 AND type = 'm.fully_read'", bob.user_id
    )
    assert more.event_id in fully


async def test_push_rules_drive_unread_counts(server):
    alice, bob, room_id = await _pair(server)
    await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "plain"})
    await alice.room_send(
        room_id,
        "m.room.message",
        {"msgtype": "m.text", "body": "hey bob", "m.mentions": {"user_ids": [bob.user_id]}},
    )
    sync = await bob.sync(timeout=0, since=bob.next_batch)
    counts = sync.rooms.join[room_id].unread_notifications
    assert (counts.notification_count, counts.highlight_count) == (2, 1)
    # A room rule with no actions silences the plain message; the mention still counts,
    # because override rules (.m.rule.is_user_mention) rank above room rules.
    status, _ = await server.request(
        "PUT",
        f"/_matrix/client/v3/pushrules/global/room/{room_id}",
        token=bob.access_token,
        json={"actions": []},
    )
    assert status == 200
    sync = await bob.sync(timeout=0, full_state=True)
    counts = sync.rooms.join[room_id].unread_notifications
    assert (counts.notification_count, counts.highlight_count) == (1, 1)


async def test_a_receipt_never_moves_back(server):
    """A receipt for an earlier event than the user's is ignored, as Synapse does (SyTest
    30rooms/21receipts "Read receipts are visible to /initialSync": "monotonically
    ratcheted"); other members are not told of it either."""
    alice, bob, room_id = await _pair(server)
    first = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "1"})
    later = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "2"})
    assert isinstance(
        await bob.update_receipt_marker(room_id, later.event_id), UpdateReceiptMarkerResponse
    )
    await alice.sync(timeout=0)
    assert isinstance(
        await bob.update_receipt_marker(room_id, first.event_id), UpdateReceiptMarkerResponse
    )
    sync = await alice.sync(timeout=0, since=alice.next_batch)
    assert room_id not in sync.rooms.join or not [
        e for e in sync.rooms.join[room_id].ephemeral if isinstance(e, ReceiptEvent)
    ]
    stored = await server.db.fetchval(
        "SELECT event_id FROM receipts WHERE user_id = $1 AND receipt_type = 'm.read'",
        bob.user_id,
    )
    assert stored == later.event_id


async def test_an_initial_sync_says_a_typer_stopped(server):
    """Once anyone typed in a room, an initial sync carries its typers, even none."""
    alice, bob, room_id = await _pair(server)
    fresh = await server.login("bob")
    sync = await fresh.sync(timeout=0)
    assert not [e for e in sync.rooms.join[room_id].ephemeral if isinstance(e, TypingNoticeEvent)]
    await alice.room_typing(room_id, True, timeout=10_000)
    await alice.room_typing(room_id, False)
    fresh = await server.login("bob")
    sync = await fresh.sync(timeout=0)
    typing = [e for e in sync.rooms.join[room_id].ephemeral if isinstance(e, TypingNoticeEvent)]
    assert [e.users for e in typing] == [[]]


async def test_others_joins_count_nowhere_even_with_a_rule_for_them(server):
    """Membership changes concern their target alone, in the unread counts as in the push
    worker's notifications: a room filling up does not re-evaluate every join on each
    member's /sync, even for a user whose own rule would notify on member events."""
    alice, bob, room_id = await _pair(server)
    status, _ = await server.request(
        "PUT",
        "/_matrix/client/v3/pushrules/global/override/joins",
        token=bob.access_token,
        json={
            "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.room.member"}],
            "actions": ["notify"],
        },
    )
    assert status == 200
    await bob.sync(timeout=0)
    for _ in range(3):
        newcomer = await server.client()
        assert not hasattr(await alice.room_invite(room_id, newcomer.user_id), "status_code")
        await newcomer.join(room_id)
    await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "welcome"})

    sync = await bob.sync(timeout=0, full_state=True)
    counts = sync.rooms.join[room_id].unread_notifications
    assert counts.notification_count == 1  # the message alone
    # Evaluated for Bob (by /sync or the push worker, which share the cache): no one
    # else's membership change.
    evaluated = [
        seen[2]
        for (user_id, _), (seen, _) in server.hs.unread_counts._verdicts.items()
        if user_id == bob.user_id
    ]
    assert [e["content"]["body"] for e in evaluated if e["type"] == "m.room.message"] == ["welcome"]
    assert all(e["state_key"] == bob.user_id for e in evaluated if e["type"] == "m.room.member")


async def _counts(bob, room_id: str, *, fresh: bool) -> tuple[int, int]:
    sync = await bob.sync(timeout=0, full_state=fresh)
    counts = sync.rooms.join[room_id].unread_notifications
    return counts.notification_count, counts.highlight_count


async def test_unread_counts_grown_with_new_events_equal_counting_afresh(server):
    """A user's cached unread counts are brought up to date with the room's new events
    (one read shared by every member woken by them) instead of counted afresh: after
    each change, what the incremental /sync says equals a count from scratch."""
    from homeserver.sync import unread

    alice, bob, room_id = await _pair(server)
    counter = server.hs.unread_counts
    grown = unread._unread_grown

    async def step(expected: tuple[int, int] | None, *, grows: bool) -> None:
        before = grown._value.get()
        incremental = await _counts(bob, room_id, fresh=False)
        assert (grown._value.get() > before) == grows
        counter._cached.clear()
        assert await _counts(bob, room_id, fresh=True) == incremental
        assert expected is None or incremental == expected

    assert await _counts(bob, room_id, fresh=True) == (0, 0)
    await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "one"})
    await step((1, 0), grows=True)
    mention = await alice.room_send(
        room_id,
        "m.room.message",
        {"msgtype": "m.text", "body": "bob?", "m.mentions": {"user_ids": [bob.user_id]}},
    )
    await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "mine"})
    await step((2, 1), grows=True)
    # A redaction changes what an earlier event counts for: counted afresh.
    await alice.room_redact(room_id, mention.event_id)
    await step(None, grows=False)
    # Bob's receipt moves his floor: counted afresh.
    last = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "2"})
    assert isinstance(
        await bob.update_receipt_marker(room_id, last.event_id), UpdateReceiptMarkerResponse
    )
    await step((0, 0), grows=False)
    # More new events than the window counts: counted afresh, at most MAX_UNREAD.
    for i in range(unread.MAX_UNREAD + 1):
        await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": str(i)})
    await step((unread.MAX_UNREAD, 0), grows=False)


async def test_unread_counts_window_slides_over_new_events(server, monkeypatch):
    """Once a room has more unread events than the counts look at, new events slide the
    window forward (the oldest verdicts leave it) instead of every /sync counting the
    newest MAX_UNREAD afresh; what it says equals a count from scratch at each step."""
    from homeserver.sync import unread

    monkeypatch.setattr(unread, "MAX_UNREAD", 4)
    alice, bob, room_id = await _pair(server)
    counter = server.hs.unread_counts
    grown = unread._unread_grown

    async def send(body: str, mention: bool = False) -> None:
        content: dict = {"msgtype": "m.text", "body": body}
        if mention:
            content["m.mentions"] = {"user_ids": [bob.user_id]}
        await alice.room_send(room_id, "m.room.message", content)

    async def step(expected: tuple[int, int]) -> None:
        before = grown._value.get()
        incremental = await _counts(bob, room_id, fresh=False)
        assert grown._value.get() > before
        counter._cached.clear()
        assert await _counts(bob, room_id, fresh=True) == incremental == expected

    for body in "abc":
        await send(body)
    await step((3, 0))
    await send("bob?", mention=True)
    await send("d")
    await step((4, 1))  # the window is full: "a" left it
    await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "mine"})
    await send("e")
    await step((4, 1))  # bob's own event is not in the window
    await send("f")
    await send("g")
    await step((4, 0))  # the mention left the window
