"""Presence with matrix-nio: setting, reading, visibility through shared rooms, /sync."""

from __future__ import annotations

import asyncio
import json

from nio import (
    PresenceGetError,
    PresenceGetResponse,
    PresenceSetResponse,
    RoomCreateResponse,
    SyncResponse,
)

V3 = "/_matrix/client/v3"


async def _shared_room(alice, bob):
    resp = await alice.room_create(invite=[bob.user_id])
    assert isinstance(resp, RoomCreateResponse), resp
    await bob.join(resp.room_id)
    return resp.room_id


async def test_set_and_get_own_presence(server):
    alice = await server.client()
    resp = await alice.get_presence(alice.user_id)
    assert isinstance(resp, PresenceGetResponse) and resp.presence == "offline"
    resp = await alice.set_presence("unavailable", "at lunch")
    assert isinstance(resp, PresenceSetResponse), resp
    resp = await alice.get_presence(alice.user_id)
    assert isinstance(resp, PresenceGetResponse), resp
    assert resp.presence == "unavailable" and resp.status_msg == "at lunch"
    assert resp.currently_active is False
    await alice.set_presence("online")
    resp = await alice.get_presence(alice.user_id)
    assert resp.presence == "online" and resp.currently_active is True and resp.status_msg is None


async def test_presence_errors_change_nothing(server):
    alice, bob = await server.client(), await server.client()
    await alice.set_presence("online", "here")
    token = alice.access_token
    status, body = await server.request(
        "PUT", f"{V3}/presence/{bob.user_id}/status", token=token, json={"presence": "online"}
    )
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    for bad, errcode in (
        ({"presence": "asleep"}, "M_INVALID_PARAM"),
        ({"status_msg": "no state"}, "M_MISSING_PARAM"),
        ({"presence": "offline", "status_msg": 5}, "M_BAD_JSON"),
    ):
        status, body = await server.request(
            "PUT", f"{V3}/presence/{alice.user_id}/status", token=token, json=bad
        )
        assert (status, body["errcode"]) == (400, errcode)
    resp = await alice.get_presence(alice.user_id)
    assert resp.presence == "online" and resp.status_msg == "here"


async def test_presence_visible_only_to_room_members(server):
    alice, bob, eve = await server.client(), await server.client(), await server.client()
    await alice.set_presence("online", "working")
    resp = await eve.get_presence(alice.user_id)
    assert isinstance(resp, PresenceGetError) and resp.status_code == "M_FORBIDDEN"
    resp = await eve.get_presence(f"@nobody:{server.server_name}")
    assert isinstance(resp, PresenceGetError) and resp.status_code == "M_NOT_FOUND"
    await _shared_room(alice, bob)
    resp = await bob.get_presence(alice.user_id)
    assert isinstance(resp, PresenceGetResponse) and resp.status_msg == "working"


async def test_presence_in_sync(server):
    alice, bob, eve = await server.client(), await server.client(), await server.client()
    await _shared_room(alice, bob)
    first = await bob.sync(timeout=0, set_presence="offline")
    assert isinstance(first, SyncResponse), first
    eve_first = await eve.sync(timeout=0, set_presence="offline")

    await alice.set_presence("unavailable", "in a meeting")
    resp = await bob.sync(timeout=0, since=first.next_batch, set_presence="offline")
    assert isinstance(resp, SyncResponse), resp
    mine = [p for p in resp.presence_events if p.user_id == alice.user_id]
    assert len(mine) == 1
    assert mine[0].presence == "unavailable" and mine[0].status_msg == "in a meeting"
    # Eve shares no room with Alice: nothing about her.
    resp = await eve.sync(timeout=0, since=eve_first.next_batch, set_presence="offline")
    assert all(p.user_id != alice.user_id for p in resp.presence_events)


async def test_sync_set_presence_marks_online(server):
    alice = await server.client()
    await alice.sync(timeout=0, set_presence="online")
    resp = await alice.get_presence(alice.user_id)
    assert resp.presence == "online"
    await alice.sync(timeout=0, set_presence="offline")
    resp = await alice.get_presence(alice.user_id)
    assert resp.presence == "online"
    await alice.sync(timeout=0, set_presence="unavailable")
    assert (await alice.get_presence(alice.user_id)).presence == "unavailable"


async def test_presence_of_a_remote_user_who_shares_a_room(server):
    """What another server told us of its user is readable by those who share a room with
    that user (found with Synapse: a remote user was "Unknown user")."""
    from tests.integration.federation.helpers import remote_member

    alice = await server.client()
    room = await alice.room_create()
    remote, stranger = "@bob:elsewhere.example", "@carol:elsewhere.example"
    await remote_member(server, room.room_id, remote)
    await server.hs.presence.store.set(remote, "unavailable", "abroad", 0)
    resp = await alice.get_presence(remote)
    assert isinstance(resp, PresenceGetResponse), resp
    assert (resp.presence, resp.status_msg) == ("unavailable", "abroad")
    resp = await alice.get_presence(stranger)
    assert isinstance(resp, PresenceGetError) and resp.status_code == "M_FORBIDDEN", resp


async def test_newly_joined_room_brings_its_members_presence(server):
    """Presence set long before is new to a user who just joined the room: the next
    incremental sync carries it."""
    alice = await server.client()
    bob = await server.client()
    assert isinstance(await alice.set_presence("online", "here"), PresenceSetResponse)
    room = await alice.room_create(invite=[bob.user_id])
    assert isinstance(room, RoomCreateResponse)
    first = await bob.sync(timeout=0, set_presence="offline")
    assert isinstance(first, SyncResponse)
    await bob.join(room.room_id)
    sync = await bob.sync(timeout=0, since=first.next_batch, set_presence="offline")
    assert isinstance(sync, SyncResponse)
    presence = {p.user_id: p for p in sync.presence_events}
    assert presence[alice.user_id].presence == "online"
    assert presence[alice.user_id].status_msg == "here"


async def test_newly_joined_room_brings_offline_for_members_without_presence(server):
    """A member who never set any presence is reported offline to a user who joins their
    room (as Synapse does): the client learns of every member's presence."""
    alice = await server.client()
    bob = await server.client()
    room = await alice.room_create(invite=[bob.user_id])
    assert isinstance(room, RoomCreateResponse)
    first = await bob.sync(timeout=0, set_presence="offline")
    assert isinstance(first, SyncResponse)
    await bob.join(room.room_id)
    sync = await bob.sync(timeout=0, since=first.next_batch, set_presence="offline")
    assert isinstance(sync, SyncResponse)
    presence = {p.user_id: p.presence for p in sync.presence_events}
    assert presence == {alice.user_id: "offline"}
    again = await bob.sync(timeout=0, since=sync.next_batch, set_presence="offline")
    assert isinstance(again, SyncResponse) and again.presence_events == []


async def test_user_joining_our_room_brings_their_presence(server):
    """Presence set before a user joined our room is new to us: the incremental sync
    that carries their join carries it."""
    alice = await server.client()
    bob = await server.client()
    room = await alice.room_create(invite=[bob.user_id])
    assert isinstance(room, RoomCreateResponse)
    assert isinstance(await bob.set_presence("unavailable", "away"), PresenceSetResponse)
    first = await alice.sync(timeout=0, set_presence="offline")
    assert isinstance(first, SyncResponse)
    await bob.join(room.room_id)
    sync = await alice.sync(timeout=0, since=first.next_batch, set_presence="offline")
    assert isinstance(sync, SyncResponse)
    presence = {p.user_id: p for p in sync.presence_events}
    assert presence[bob.user_id].presence == "unavailable"
    assert presence[bob.user_id].status_msg == "away"


async def _parked(notifier) -> None:
    for _ in range(200):  # bounded
        if notifier.waiting == 1:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the /sync did not park")


async def test_presence_wakes_rooms_not_a_list_of_members(server):
    """A presence change names its user and their rooms, whatever the rooms' size (the
    members were read under the stream's lock and sent to every process), and still
    wakes a co-member's waiting /sync; a poll whose filter turns presence off sleeps
    through it."""
    alice, bob = await server.client(), await server.client()
    room_id = await _shared_room(alice, bob)
    changes = []
    notifier, streams = server.hs.notifier, server.hs.streams
    on_change = streams.on_change

    def record(change):
        changes.append(change)
        on_change(change)

    streams.on_change = record
    try:
        first = await bob.sync(timeout=0, set_presence="offline")
        waiting = asyncio.ensure_future(
            bob.sync(timeout=30_000, since=first.next_batch, set_presence="offline")
        )
        await _parked(notifier)
        await alice.set_presence("unavailable", "away")
        resp = await asyncio.wait_for(waiting, 10)
        assert isinstance(resp, SyncResponse), resp
        assert [p.presence for p in resp.presence_events if p.user_id == alice.user_id] == [
            "unavailable"
        ]
        presence = [c for c in changes if c.stream == "presence"]
        assert [(c.users, c.rooms) for c in presence] == [({alice.user_id}, {room_id})]

        # Presence filtered out: the poll is not woken by it, and is by a message.
        quiet = json.dumps({"presence": {"types": []}})
        second = await bob.sync(timeout=0, since=resp.next_batch, sync_filter=quiet)
        waiting = asyncio.ensure_future(
            bob.sync(timeout=30_000, since=second.next_batch, sync_filter=quiet)
        )
        await _parked(notifier)
        (parked,) = notifier._all_waiters
        await alice.set_presence("online", "back")
        await asyncio.sleep(0.2)
        assert not parked.done() and not waiting.done()
        await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hi"})
        resp = await asyncio.wait_for(waiting, 10)
        assert isinstance(resp, SyncResponse), resp
        assert resp.rooms.join[room_id].timeline.events
        assert resp.presence_events == []
    finally:
        streams.on_change = on_change


async def test_the_presence_filter_picks_senders(server):
    alice, bob, carol = await server.client(), await server.client(), await server.client()
    room_id = await _shared_room(alice, bob)
    await alice.room_invite(room_id, carol.user_id)
    await carol.join(room_id)
    first = await bob.sync(timeout=0, set_presence="offline")
    await alice.set_presence("online", "a")
    await carol.set_presence("online", "c")
    not_alice = json.dumps({"presence": {"not_senders": [alice.user_id]}})
    resp = await bob.sync(timeout=0, since=first.next_batch, sync_filter=not_alice)
    assert isinstance(resp, SyncResponse), resp
    # Bob's own (this sync marks him online) and Carol's, not Alice's.
    assert {p.user_id for p in resp.presence_events} == {bob.user_id, carol.user_id}
