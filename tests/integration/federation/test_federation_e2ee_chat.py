"""An encrypted conversation across two servers of ours with matrix-nio[e2e]: a remote
invite and join, remote device-key query and one-time-key claim, Megolm room keys sent
as Olm-encrypted to-device messages (m.direct_to_device EDUs), and encrypted timeline
events delivered by each server's outbound queue. Neither server can read any of it."""

from __future__ import annotations

import asyncio
import uuid

from nio import JoinResponse, MegolmEvent, RoomMessageText, SyncResponse

from tests.integration.e2ee.test_e2ee_chat import (
    ENCRYPTION,
    _pg_dump,
    e2e_client,
    send_text,
    settle,
)

MAX_SYNCS = 30
SYNC_WAIT_MS = 2_000


async def _until(client, done, what: str) -> None:
    """Syncs (with the key traffic a client does after each) until `done(response)`;
    bounded in rounds and, for each round, in time."""
    for _ in range(MAX_SYNCS):
        # settle() syncs with timeout=0; a short long-poll first lets the outbound
        # queues deliver without spinning.
        polled = await asyncio.wait_for(client.sync(timeout=SYNC_WAIT_MS), timeout=30)
        assert isinstance(polled, SyncResponse), polled
        settled = await asyncio.wait_for(settle(client), timeout=30)
        # Both responses are looked at: `done` may collect what each one brings.
        if done(polled) | done(settled):
            return
    raise AssertionError(f"{client.user_id}: {what} never happened")


async def _receive(client, room_id: str, event_id: str) -> RoomMessageText | MegolmEvent:
    """The event `event_id` as `client`'s timeline shows it, once it has arrived."""
    found: list = []

    def arrived(resp) -> bool:
        room = resp.rooms.join.get(room_id)
        events = room.timeline.events if room is not None else []
        found.extend(e for e in events if e.event_id == event_id)
        return bool(found)

    await _until(client, arrived, f"receiving {event_id}")
    return found[0]


async def _stored_room_json(server, room_id: str) -> tuple[set[str], str]:
    """The IDs of the m.room.encrypted events `server` stored for the room, and all the
    room's stored event JSON (with the unsigned additions)."""
    rows = await server.db.fetch(
        "SELECT event_id, type, json, coalesce(unsigned_json, '') AS unsigned FROM events"
        " WHERE room_id = $1",
        room_id,
    )
    encrypted = {r["event_id"] for r in rows if r["type"] == "m.room.encrypted"}
    return encrypted, "\n".join(r["json"] + r["unsigned"] for r in rows)


async def test_encrypted_conversation_between_two_of_our_servers(pair, tmp_path):
    hs1, hs2 = pair
    alice = await e2e_client(hs1, tmp_path, "alice")
    bob = await e2e_client(hs2, tmp_path, "bob")

    created = await alice.room_create(invite=[bob.user_id], initial_state=[ENCRYPTION])
    room_id = created.room_id
    await _until(bob, lambda r: room_id in r.rooms.invite, "the remote invite")
    joined = await bob.join(room_id)
    assert isinstance(joined, JoinResponse), joined
    await _until(bob, lambda r: bob.rooms[room_id].encrypted, "the encrypted room state")
    assert alice.user_id in bob.rooms[room_id].users
    await _until(alice, lambda r: bob.user_id in alice.rooms[room_id].users, "bob's join")

    secret = f"from hs1: the budget is {uuid.uuid4().hex}"
    sent = await send_text(alice, room_id, secret)
    got = await _receive(bob, room_id, sent)
    assert isinstance(got, RoomMessageText), got  # a MegolmEvent would mean no room key
    assert (got.sender, got.body) == (alice.user_id, secret)

    reply = f"from hs2: agreed, {uuid.uuid4().hex}"
    sent_back = await send_text(bob, room_id, reply)
    got = await _receive(alice, room_id, sent_back)
    assert isinstance(got, RoomMessageText), got
    assert (got.sender, got.body) == (bob.user_id, reply)

    # Both servers hold both messages, encrypted; no plaintext in any stored event, nor
    # anywhere else in either database.
    for server in (hs1, hs2):
        encrypted, stored = await _stored_room_json(server, room_id)
        assert encrypted == {sent, sent_back}, server.server_name
        assert '"m.megolm.v1.aes-sha2"' in stored and '"ciphertext"' in stored
        for text in (secret, reply):
            assert text not in stored and text.split()[-1] not in stored, server.server_name
        dump = _pg_dump(server)
        assert room_id.encode() in dump
        for text in (secret, reply):
            assert text.split()[-1].encode() not in dump, server.server_name
