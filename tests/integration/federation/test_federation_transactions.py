"""Inbound /send: limits, malformed bodies, idempotency, PDU delegation, EDU dispatch and
the origin check on EDUs; and the endpoints a non-admitted server must be refused."""

from __future__ import annotations

import aiohttp
import pytest
from nio import RoomCreateResponse, SyncResponse

from tests.federation_ca import FEDERATED_PRESENCE, start_federating_server
from tests.integration.federation.helpers import (
    RecordingInbound,
    new_txn_id,
    remote_member,
    signed_request,
    transaction,
)

SEND = "/_matrix/federation/v1/send/"


@pytest.fixture
async def trio(make_server, ca):
    """hs1 and hs2 admit each other; hs3 is admitted by neither."""
    hs1 = await start_federating_server(
        make_server, ca, "hs1.test.local", ["hs2.test.local"], config=FEDERATED_PRESENCE
    )
    hs2 = await start_federating_server(
        make_server, ca, "hs2.test.local", ["hs1.test.local"], config=FEDERATED_PRESENCE
    )
    hs3 = await start_federating_server(make_server, ca, "hs3.test.local", ["*.test.local"])
    return hs1, hs2, hs3


def to_device_edu(sender: str, user_id: str, message_id: str, body: str) -> dict:
    return {
        "edu_type": "m.direct_to_device",
        "content": {
            "sender": sender,
            "type": "org.example.ping",
            "message_id": message_id,
            "messages": {user_id: {"*": {"body": body}}},
        },
    }


async def to_device_bodies(client) -> list[str]:
    resp = await client.sync(timeout=0)
    assert isinstance(resp, SyncResponse), resp
    return [e.source["content"]["body"] for e in resp.to_device_events]


async def metric(server, name: str) -> float:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.metrics_url) as resp:
            text = await resp.text()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


async def inbound_txn_count(server) -> int:
    return await server.db.fetchval("SELECT count(*) FROM federation_inbound_txns")


async def test_transaction_limits_and_malformed_bodies_change_nothing(trio, ca):
    hs1, hs2, hs3 = trio
    bob = await hs1.client("bob")
    await bob.sync(timeout=0)
    ping = to_device_edu(f"@alice:{hs2.server_name}", bob.user_id, "m1", "hello")
    too_many_pdus = transaction(hs2.server_name, pdus=[{"type": "x"}] * 51, edus=[ping])
    too_many_edus = transaction(hs2.server_name, edus=[ping] * 101)
    cases = [
        (too_many_pdus, 400, "M_BAD_JSON"),
        (too_many_edus, 400, "M_BAD_JSON"),
        ([ping], 400, "M_NOT_JSON"),  # a JSON array, not an object
        ({**transaction(hs2.server_name), "pdus": {"a": 1}}, 400, "M_BAD_JSON"),
        (transaction(hs2.server_name, pdus=["not an object"]), 400, "M_BAD_JSON"),
        (transaction(hs2.server_name, edus=[ping, {"edu_type": "m.typing"}]), 400, "M_BAD_JSON"),
        (transaction(hs2.server_name, edus=[{"content": {}}]), 400, "M_BAD_JSON"),
        # The body names another origin than the server that signed the request.
        ({**transaction(hs3.server_name, edus=[ping])}, 403, "M_FORBIDDEN"),
    ]
    for body, status, errcode in cases:
        got = await signed_request(hs2, hs1, ca, "PUT", SEND + new_txn_id(), body)
        assert got[0] == status and got[1]["errcode"] == errcode, (body, got)
    # Not JSON at all, and no body.
    got = await signed_request(hs2, hs1, ca, "PUT", SEND + new_txn_id(), raw=b"{nope")
    assert (got[0], got[1]["errcode"]) == (400, "M_NOT_JSON")
    got = await signed_request(hs2, hs1, ca, "PUT", SEND + new_txn_id())
    assert (got[0], got[1]["errcode"]) == (400, "M_NOT_JSON")
    # None of them was recorded, and the to-device message in them was never delivered.
    assert await inbound_txn_count(hs1) == 0
    assert await to_device_bodies(bob) == []
    # Exactly at the limits is fine.
    at_limit = transaction(hs2.server_name, edus=[ping] * 100)
    status, body = await signed_request(hs2, hs1, ca, "PUT", SEND + new_txn_id(), at_limit)
    assert (status, body) == (200, {"pdus": {}})
    assert await to_device_bodies(bob) == ["hello"]  # one message ID: delivered once


async def test_a_repeated_transaction_gets_the_same_answer_and_is_not_reapplied(trio, ca):
    hs1, hs2, _ = trio
    bob = await hs1.client("bob")
    await bob.sync(timeout=0)
    alice = f"@alice:{hs2.server_name}"
    repeats = await metric(
        hs1, 'matrix_federation_transactions_total{direction="received",result="repeat"}'
    )
    txn_id = new_txn_id()
    first = transaction(hs2.server_name, edus=[to_device_edu(alice, bob.user_id, "a", "one")])
    status, answer = await signed_request(hs2, hs1, ca, "PUT", SEND + txn_id, first)
    assert (status, answer) == (200, {"pdus": {}})
    # The same txnId again, even with other contents: the stored answer, nothing applied.
    again = transaction(hs2.server_name, edus=[to_device_edu(alice, bob.user_id, "b", "two")])
    assert await signed_request(hs2, hs1, ca, "PUT", SEND + txn_id, again) == (200, answer)
    # A new transaction repeating a message ID is not delivered twice either.
    status, _ = await signed_request(hs2, hs1, ca, "PUT", SEND + new_txn_id(), first)
    assert status == 200
    assert await to_device_bodies(bob) == ["one"]
    assert await inbound_txn_count(hs1) == 2
    assert (
        await metric(
            hs1, 'matrix_federation_transactions_total{direction="received",result="repeat"}'
        )
        == repeats + 1
    )


async def test_pdus_go_to_the_inbound_pipeline(trio, ca):
    hs1, hs2, _ = trio
    pdu = {
        "room_id": "!unknown:" + hs2.server_name,
        "type": "m.room.message",
        "sender": f"@alice:{hs2.server_name}",
        "content": {"body": "hi"},
        "depth": 3,
        "prev_events": [],
        "auth_events": [],
        "origin_server_ts": 1,
        "hashes": {"sha256": "x"},
        "signatures": {},
    }
    # The PDUs are handed over with the authenticated origin.
    recorder = RecordingInbound()
    hs1.hs.federation.inbound = recorder
    status, body = await signed_request(
        hs2, hs1, ca, "PUT", SEND + new_txn_id(), transaction(hs2.server_name, pdus=[pdu])
    )
    assert (status, body) == (200, {"pdus": {}})
    assert recorder.origins == [hs2.server_name] and recorder.pdus == [pdu]


async def test_typing_edu_reaches_local_sync_and_foreign_claims_are_dropped(trio, ca):
    hs1, hs2, hs3 = trio
    bob = await hs1.client("bob")
    room = await bob.room_create()
    assert isinstance(room, RoomCreateResponse)
    alice = f"@alice:{hs2.server_name}"
    await remote_member(hs1, room.room_id, alice)
    await bob.sync(timeout=0)

    def typing(user_id: str, room_id: str = room.room_id) -> dict:
        content = {"room_id": room_id, "user_id": user_id, "typing": True}
        return {"edu_type": "m.typing", "content": content}

    edus = [
        typing(f"@mallory:{hs3.server_name}"),  # another server's user: dropped
        typing(f"@carol:{hs2.server_name}"),  # not in the room: dropped
        {"edu_type": "org.example.unknown", "content": {"x": 1}},  # ignored
        typing(alice),
    ]
    status, body = await signed_request(
        hs2, hs1, ca, "PUT", SEND + new_txn_id(), transaction(hs2.server_name, edus=edus)
    )
    assert (status, body) == (200, {"pdus": {}})
    resp = await bob.sync(timeout=0)
    assert isinstance(resp, SyncResponse)
    [typing_event] = [
        e
        for e in resp.rooms.join[room.room_id].ephemeral
        if type(e).__name__ == "TypingNoticeEvent"
    ]
    assert typing_event.users == [alice]


async def test_receipt_and_presence_edus_are_applied(trio, ca):
    hs1, hs2, _ = trio
    bob = await hs1.client("bob")
    room = await bob.room_create()
    sent = await bob.room_send(room.room_id, "m.room.message", {"msgtype": "m.text", "body": "x"})
    alice = f"@alice:{hs2.server_name}"
    await remote_member(hs1, room.room_id, alice)
    await bob.sync(timeout=0)
    receipt = {
        room.room_id: {
            "m.read": {alice: {"event_ids": [sent.event_id], "data": {"ts": 1}}},
            "m.read.private": {alice: {"event_ids": [sent.event_id], "data": {"ts": 1}}},
        }
    }
    presence = {
        "push": [
            {
                "user_id": alice,
                "presence": "online",
                "last_active_ago": 10,
                "status_msg": "lunch",
                "currently_active": True,
            }
        ]
    }
    edus = [
        {"edu_type": "m.receipt", "content": receipt},
        {"edu_type": "m.presence", "content": presence},
    ]
    status, _ = await signed_request(
        hs2, hs1, ca, "PUT", SEND + new_txn_id(), transaction(hs2.server_name, edus=edus)
    )
    assert status == 200
    resp = await bob.sync(timeout=0)
    receipts = [
        e for e in resp.rooms.join[room.room_id].ephemeral if type(e).__name__ == "ReceiptEvent"
    ]
    found = {(r.user_id, r.receipt_type, r.event_id) for e in receipts for r in e.receipts}
    # Only the public receipt crosses servers.
    assert found == {(alice, "m.read", sent.event_id)}
    [event] = [e for e in resp.presence_events if e.user_id == alice]
    assert (event.presence, event.status_msg) == ("online", "lunch")


async def test_a_non_admitted_server_is_refused_every_endpoint(trio, ca):
    hs1, _, hs3 = trio
    user = f"@bob:{hs1.server_name}"
    requests = [
        ("PUT", SEND + new_txn_id(), transaction(hs3.server_name)),
        ("GET", f"/_matrix/federation/v1/user/devices/{user}", None),
        ("POST", "/_matrix/federation/v1/user/keys/query", {"device_keys": {user: []}}),
        ("POST", "/_matrix/federation/v1/user/keys/claim", {"one_time_keys": {user: {"D": "a"}}}),
        ("GET", "/_matrix/federation/v1/publicRooms", None),
        ("POST", "/_matrix/federation/v1/publicRooms", {}),
    ]
    for method, path, body in requests:
        status, answer = await signed_request(hs3, hs1, ca, method, path.replace("@", "%40"), body)
        assert (status, answer.get("errcode")) == (403, "M_FORBIDDEN"), (path, answer)
    assert await inbound_txn_count(hs1) == 0
    # And nothing is ever queued for it.
    await hs1.hs.federation.sender.send_edu([hs3.server_name], "m.direct_to_device", {"x": 1})
    assert await hs1.db.fetchval("SELECT count(*) FROM federation_outbound_queue") == 0


async def test_room_edus_respect_the_rooms_server_acl(trio, ca):
    hs1, hs2, _ = trio
    bob = await hs1.client("bob")
    room = await bob.room_create()
    alice = f"@alice:{hs2.server_name}"
    await remote_member(hs1, room.room_id, alice)
    denied: list[tuple[str, str]] = []

    async def acl_allows(room_id: str, server_name: str) -> bool:
        denied.append((room_id, server_name))
        return False  # as if the room's m.room.server_acl denied hs2

    hs1.hs.federation.acl_allows = acl_allows
    typing = {"room_id": room.room_id, "user_id": alice, "typing": True}
    edus = [{"edu_type": "m.typing", "content": typing}]
    status, _ = await signed_request(
        hs2, hs1, ca, "PUT", SEND + new_txn_id(), transaction(hs2.server_name, edus=edus)
    )
    assert status == 200
    assert denied == [(room.room_id, hs2.server_name)]
    assert not await hs1.db.fetchval("SELECT 1 FROM typing WHERE user_id = $1", alice)
