"""Which servers the outbound queue sends an event to, decided in the transaction that
persists it: the servers joined before the event (a server joining after it does not
get it), the target's server of a kick or ban, never the invitee's server of an invite
(it got the invite through /invite), never ourselves nor a server not admitted."""

from __future__ import annotations

import pytest
from nio import RoomCreateResponse, ToDeviceMessage, ToDeviceResponse

from storage.events import PersistItem
from tests.federation_ca import start_federating_server
from tests.integration.federation.helpers import (
    eventually,
    remote_member,
    stop_federation_listener,
)


@pytest.fixture
async def pair(make_server, ca):
    hs1 = await start_federating_server(
        make_server, ca, "hs1.test.local", ["hs2.test.local", "hs3.test.local"]
    )
    hs2 = await start_federating_server(make_server, ca, "hs2.test.local", ["hs1.test.local"])
    return hs1, hs2


def _item(room_id: str, event_id: str, event: dict, *, federated: bool = False) -> PersistItem:
    return PersistItem(
        {"room_id": room_id, "content": {}, **event},
        event_id,
        room_id,
        None,
        None,
        federated=federated,
    )


async def _queued(conn, event_id: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT destination FROM federation_outbound_queue WHERE event_id = $1 ORDER BY 1",
        event_id,
    )
    return [r["destination"] for r in rows]


async def test_an_event_goes_to_the_servers_joined_before_it(pair):
    hs1, hs2 = pair
    alice = await hs1.client("alice")
    room = await alice.room_create()
    assert isinstance(room, RoomCreateResponse)
    room_id = room.room_id
    await remote_member(hs1, room_id, f"@bob:{hs2.server_name}")
    await remote_member(hs1, room_id, "@eve:elsewhere.invalid")  # not admitted
    hs3 = "hs3.test.local:1"
    sender = hs1.hs.federation.sender
    # A batch as group commit builds it: alice writes, carol of hs3 joins (an event of
    # hs3's, not sent on), alice writes again; then a message from hs2, not ours.
    items = [
        _item(room_id, "$before", {"type": "m.room.message", "sender": alice.user_id}),
        _item(
            room_id,
            "$join",
            {
                "type": "m.room.member",
                "state_key": f"@carol:{hs3}",
                "sender": f"@carol:{hs3}",
                "content": {"membership": "join"},
            },
            federated=True,
        ),
        _item(room_id, "$after", {"type": "m.room.message", "sender": alice.user_id}),
        _item(
            room_id,
            "$theirs",
            {"type": "m.room.message", "sender": f"@bob:{hs2.server_name}"},
            federated=True,
        ),
    ]
    async with hs1.db.acquire() as conn:
        tr = conn.transaction()
        await tr.start()
        try:
            woken = await sender.queue_events(conn, items, {})
            assert await _queued(conn, "$before") == [hs2.server_name]
            assert await _queued(conn, "$after") == sorted([hs2.server_name, hs3])
            assert await _queued(conn, "$join") == []
            assert await _queued(conn, "$theirs") == []
            assert sorted(woken) == sorted([hs2.server_name, hs3])
            # The join relayed for its origin (a send_join we answered) goes to the others.
            assert await sender.queue_events(conn, items[1:2], {"$join": hs3}) == [hs2.server_name]
        finally:
            await tr.rollback()


async def test_a_ban_is_queued_for_the_banned_users_server_at_commit(pair):
    hs1, hs2 = pair
    alice = await hs1.client("alice")
    room = await alice.room_create()
    assert isinstance(room, RoomCreateResponse)
    await stop_federation_listener(hs2)  # what is queued stays queued
    ban = await alice.room_ban(room.room_id, f"@bob:{hs2.server_name}", "spam")
    assert ban.transport_response.status == 200
    # Queued in the transaction that stored the ban: there when the client hears of it.
    ban_id = await hs1.db.fetchval(
        "SELECT event_id FROM current_state WHERE room_id = $1 AND state_key = $2",
        room.room_id,
        f"@bob:{hs2.server_name}",
    )
    async with hs1.db.acquire() as conn:
        assert await _queued(conn, ban_id) == [hs2.server_name]


async def test_an_invite_reaches_the_invitees_server_once(pair):
    hs1, hs2 = pair
    pdus: list[dict] = []
    receiver = hs2.hs.federation.transactions
    original = receiver.receive

    async def receive(origin, txn_id, content):
        pdus.extend(content.get("pdus", []))
        return await original(origin, txn_id, content)

    receiver.receive = receive
    alice = await hs1.client("alice")
    bob = await hs2.client("bob")
    room = await alice.room_create()
    assert isinstance(room, RoomCreateResponse)
    invite = await alice.room_invite(room.room_id, bob.user_id)
    assert invite.transport_response.status == 200
    # A to-device message queued after the invite: once it is in bob's inbox, anything
    # queued before it for hs2 has been delivered (a destination's queue goes in order).
    await bob.sync(timeout=0)
    message = ToDeviceMessage("org.example.ping", bob.user_id, bob.device_id, {"body": "x"})
    assert isinstance(await alice.to_device(message), ToDeviceResponse)

    async def fence_arrived():
        resp = await bob.sync(timeout=0)
        return [e for e in resp.to_device_events if e.source["content"].get("body") == "x"]

    await eventually(fence_arrived)
    invites = [p for p in pdus if p.get("content", {}).get("membership") == "invite"]
    assert invites == []  # it came through /invite, not again in a transaction
