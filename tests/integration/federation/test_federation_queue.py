"""The outbound transaction queue: local events and EDUs reach the servers in the room;
limits and order per transaction; backoff while a peer is down and catch-up when it is
back; a restart of the sending server loses nothing."""

from __future__ import annotations

import time

import pytest
from nio import RoomCreateResponse, RoomSendResponse, ToDeviceMessage, ToDeviceResponse

from tests.federation_ca import FEDERATED_PRESENCE, start_federating_server
from tests.integration.federation.helpers import (
    RecordingInbound,
    eventually,
    fast_retries,
    federation_port,
    remote_member,
    start_federation_listener,
    stop_federation_listener,
)


async def start_hs1(make_server, ca, **kw):
    return await start_federating_server(
        make_server, ca, "hs1.test.local", ["hs2.test.local"], config=FEDERATED_PRESENCE, **kw
    )


@pytest.fixture
async def pair(make_server, ca):
    hs1 = await start_hs1(make_server, ca)
    hs2 = await start_federating_server(
        make_server, ca, "hs2.test.local", ["hs1.test.local"], config=FEDERATED_PRESENCE
    )
    return hs1, hs2


async def queued(server, kind: str | None = None) -> int:
    where = {"pdu": " WHERE event_id IS NOT NULL", "edu": " WHERE edu_type IS NOT NULL"}
    return await server.db.fetchval(
        "SELECT count(*) FROM federation_outbound_queue" + where.get(kind, "")
    )


async def failures(server, destination: str) -> int:
    value = await server.db.fetchval(
        "SELECT failures FROM federation_destinations WHERE destination = $1", destination
    )
    return value or 0


class ToDeviceInbox:
    """Collects a nio client's to-device messages across syncs."""

    def __init__(self, client):
        self.client = client
        self.bodies: list[str] = []

    async def has(self, body: str) -> bool:
        resp = await self.client.sync(timeout=0)
        self.bodies += [e.source["content"].get("body") for e in resp.to_device_events]
        return body in self.bodies


async def shared_room(hs1, hs2, alice, bob_id: str) -> str:
    """A room of alice's on hs1 that bob (hs2) is in, as both servers see it."""
    room = await alice.room_create()
    assert isinstance(room, RoomCreateResponse)
    await remote_member(hs1, room.room_id, bob_id)
    await remote_member(hs2, room.room_id, alice.user_id)
    await remote_member(hs2, room.room_id, bob_id)
    return room.room_id


async def test_local_events_and_edus_reach_the_servers_in_the_room(pair):
    hs1, hs2 = pair
    recorder = hs2.hs.federation.inbound = RecordingInbound()
    alice = await hs1.client("alice")
    bob = await hs2.client("bob")
    room_id = await shared_room(hs1, hs2, alice, bob.user_id)

    sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hi"})
    assert isinstance(sent, RoomSendResponse)

    async def got_message():
        return [p for p in recorder.pdus if p.get("content", {}).get("body") == "hi"]

    [pdu] = await eventually(got_message)
    assert (pdu["room_id"], pdu["sender"]) == (room_id, alice.user_id)
    assert recorder.origins[-1] == hs1.server_name

    await alice.room_typing(room_id, True, timeout=20_000)

    async def typing_on_hs2():
        return await hs2.db.fetchval(
            "SELECT 1 FROM typing WHERE room_id = $1 AND user_id = $2", room_id, alice.user_id
        )

    await eventually(typing_on_hs2)

    await alice.room_read_markers(
        room_id, sent.event_id, read_event=sent.event_id, private_read_event=sent.event_id
    )
    await alice.set_presence("online", "in a meeting")

    async def receipt_on_hs2():
        return await hs2.db.fetch(
            "SELECT receipt_type, event_id FROM receipts WHERE room_id = $1 AND user_id = $2",
            room_id,
            alice.user_id,
        )

    receipts = await eventually(receipt_on_hs2)

    # Presence was set after the markers; once it is on hs2 (EDUs of a destination go in
    # order) a private receipt, had it been sent, would be there too. Read from hs2's
    # table, as typing and receipts: the stand-in membership has no member event, so
    # bob's /sync does not list the room (test_federation_room_edus.py checks presence
    # through /sync in a room joined for real).
    async def presence_on_hs2():
        return await hs2.db.fetchrow(
            "SELECT state, status_msg FROM presence WHERE user_id = $1", alice.user_id
        )

    presence = await eventually(presence_on_hs2)
    assert (presence["state"], presence["status_msg"]) == ("online", "in a meeting")
    receipts = await receipt_on_hs2()
    assert [(r["receipt_type"], r["event_id"]) for r in receipts] == [("m.read", sent.event_id)]
    await eventually(lambda: _equals(queued(hs1), 0))


async def test_to_device_message_to_a_remote_device(pair):
    hs1, hs2 = pair
    alice = await hs1.client("alice")
    bob = await hs2.client("bob")
    inbox = ToDeviceInbox(bob)
    await inbox.has("")
    message = ToDeviceMessage("org.example.ping", bob.user_id, bob.device_id, {"body": "ping"})
    assert isinstance(await alice.to_device(message), ToDeviceResponse)
    await eventually(lambda: inbox.has("ping"))
    [event] = [b for b in inbox.bodies if b == "ping"]
    assert event == "ping"


async def test_limits_order_backoff_and_catch_up_when_the_peer_returns(pair):
    hs1, hs2 = pair
    sender = hs1.hs.federation.sender
    sender.min_backoff_s = sender.max_backoff_s = 3600.0  # only the peer's return helps
    await stop_federation_listener(hs2)
    # A first EDU fails to go out: hs2 is down, so hs1 backs off for an hour.
    await sender.send_edu([hs2.server_name], "org.example.seq", {"n": 0})
    assert await eventually(lambda: failures(hs1, hs2.server_name)) == 1
    retry_at = await hs1.db.fetchval(
        "SELECT retry_at_ts FROM federation_destinations WHERE destination = $1", hs2.server_name
    )
    assert retry_at > time.time() * 1000 + 3000 * 1000
    # More queues up meanwhile, none of it attempted: 60 PDUs and 119 EDUs.
    alice = await hs1.client("alice")
    room = await alice.room_create()
    await remote_member(hs1, room.room_id, f"@bob:{hs2.server_name}")
    for i in range(60):
        sent = await alice.room_send(
            room.room_id, "m.room.message", {"body": f"m{i}", "msgtype": "m.text"}
        )
        assert isinstance(sent, RoomSendResponse)
    for n in range(1, 120):
        await sender.send_edu([hs2.server_name], "org.example.seq", {"n": n})
    await eventually(lambda: _equals(queued(hs1, "pdu"), 60))
    assert await queued(hs1, "edu") == 120
    assert await failures(hs1, hs2.server_name) == 1

    # hs2 comes back, recording what arrives.
    recorder = hs2.hs.federation.inbound = RecordingInbound()
    sizes: list[tuple[int, int]] = []
    seq: list[int] = []
    receiver = hs2.hs.federation.transactions
    original = receiver.receive

    async def receive(origin, txn_id, content):
        sizes.append((len(content.get("pdus", [])), len(content.get("edus", []))))
        return await original(origin, txn_id, content)

    async def on_seq(origin, content):
        seq.append(content["n"])

    receiver.receive = receive
    hs2.hs.federation.edu_handlers["org.example.seq"] = on_seq
    await start_federation_listener(hs2)
    # hs2 talks to hs1 (a transaction of its own): hs1 knows it is back and catches up.
    bob = await hs2.client("bob")
    message = ToDeviceMessage("org.example.ping", f"@alice:{hs1.server_name}", "X", {"body": "."})
    assert isinstance(await bob.to_device(message), ToDeviceResponse)
    await eventually(lambda: _equals(queued(hs1), 0))
    await eventually(lambda: _equals(failures(hs1, hs2.server_name), 0))

    # The transaction in flight at the failure went again as it was; then the oldest
    # first, 50 PDUs and 100 EDUs at most per transaction.
    assert sizes == [(0, 1), (50, 100), (10, 19)]
    assert seq == list(range(120))
    assert [p["content"]["body"] for p in recorder.pdus] == [f"m{i}" for i in range(60)]
    assert await failures(hs1, hs2.server_name) == 0


async def _equals(value_coro, expected) -> bool:
    return (await value_coro) == expected


async def test_backoff_doubles_up_to_its_cap_and_the_poller_retries(pair):
    hs1, hs2 = pair
    sender = hs1.hs.federation.sender
    fast_retries(hs1, min_backoff_s=0.05, max_backoff_s=0.2)
    assert [sender.backoff_ms(n) for n in (1, 2, 3, 4, 10)] == [50, 100, 200, 200, 200]
    bob = await hs2.client("bob")
    inbox = ToDeviceInbox(bob)
    await stop_federation_listener(hs2)
    alice = await hs1.client("alice")
    message = ToDeviceMessage("org.example.ping", bob.user_id, bob.device_id, {"body": "late"})
    assert isinstance(await alice.to_device(message), ToDeviceResponse)
    # Retried again and again (by the poller) while the peer is down; nothing is lost.
    await eventually(lambda: _at_least(failures(hs1, hs2.server_name), 3))
    assert await queued(hs1, "edu") == 1
    await start_federation_listener(hs2)
    await eventually(lambda: inbox.has("late"))
    # Acknowledged (hs2's answer reached hs1): the queue is empty and the backoff over.
    await eventually(lambda: _equals(queued(hs1), 0))
    assert await failures(hs1, hs2.server_name) == 0


async def _at_least(value_coro, minimum) -> bool:
    return (await value_coro) >= minimum


async def test_the_queue_survives_a_restart_of_the_sender(make_server, ca, pair):
    hs1, hs2 = pair
    fast_retries(hs1)
    bob = await hs2.client("bob")
    inbox = ToDeviceInbox(bob)
    await inbox.has("")
    await stop_federation_listener(hs2)
    alice = await hs1.client("alice")
    room = await alice.room_create()
    await remote_member(hs1, room.room_id, bob.user_id)
    await alice.room_send(room.room_id, "m.room.message", {"msgtype": "m.text", "body": "kept"})
    message = ToDeviceMessage("org.example.ping", bob.user_id, bob.device_id, {"body": "kept"})
    assert isinstance(await alice.to_device(message), ToDeviceResponse)
    await eventually(lambda: _at_least(failures(hs1, hs2.server_name), 1))
    await eventually(lambda: _equals(queued(hs1), 2))

    # One more event, and hs1 stops at once: committed events reach the queue before
    # the sender stops.
    await alice.room_send(room.room_id, "m.room.message", {"msgtype": "m.text", "body": "last"})
    dsn, port = hs1.hs.db.dsn, federation_port(hs1)
    await hs1.close()
    # hs2 comes back; hs1 starts again on its database.
    recorder = hs2.hs.federation.inbound = RecordingInbound()
    await start_federation_listener(hs2)
    restarted = await start_hs1(make_server, ca, port=port, dsn=dsn)
    assert restarted.server_name == hs1.server_name

    await eventually(lambda: inbox.has("kept"))

    async def pdu_arrived():
        bodies = [p.get("content", {}).get("body") for p in recorder.pdus]
        return bodies == ["kept", "last"]

    await eventually(pdu_arrived)
    await eventually(lambda: _equals(queued(restarted), 0))
