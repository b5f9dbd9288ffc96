"""Two processes writing to one room: a process whose cached room head is dropped (another
process's event) and read again while one of its own events is still being stored must not
keep a head without that event. Two servers in one test process share one database, each
with its own heads and its own LISTEN connection."""

from __future__ import annotations

import asyncio

from nio import JoinResponse, RoomCreateResponse, RoomPreset, RoomSendResponse


async def _until(condition) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


async def test_a_join_stored_while_the_head_is_reread_is_kept(make_server, fresh_dsn, monkeypatch):
    first = await make_server()
    second = await make_server(dsn=fresh_dsn)
    alice = await first.client("alice")
    bob = await first.client("bob")
    alice_on_second = second.new_client("alice")
    alice_on_second.restore_login(alice.user_id, alice.device_id, alice.access_token)
    created = await alice.room_create(preset=RoomPreset.public_chat)
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id
    events = first.hs.events
    await events.room_head(room_id)  # cached on `first`

    # Bob's join on `first` is built on the cached head and waits to be stored.
    gate = asyncio.Event()
    waiting = asyncio.Event()
    persist = events._persist

    async def gated_persist(batch):
        waiting.set()
        await gate.wait()
        await persist(batch)

    monkeypatch.setattr(events, "_persist", gated_persist)
    join = asyncio.create_task(bob.join(room_id))
    await waiting.wait()

    # Alice's message through `second` drops `first`'s head; a request on `first` reads
    # the head again from the database, where Bob's join is not yet.
    sent = await alice_on_second.room_send(
        room_id, "m.room.message", {"msgtype": "m.text", "body": "meanwhile"}
    )
    assert isinstance(sent, RoomSendResponse), sent
    await _until(lambda: room_id not in events._heads)
    reread = await events.room_head(room_id)
    assert ("m.room.member", bob.user_id) not in reread.state

    gate.set()
    assert isinstance(await join, JoinResponse)
    # Bob is in the room: what he sends through `first` is accepted.
    answer = await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hi"})
    assert isinstance(answer, RoomSendResponse), answer
    head = await events.room_head(room_id)
    assert head.state[("m.room.member", bob.user_id)]
