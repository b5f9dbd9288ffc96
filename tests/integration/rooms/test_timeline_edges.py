"""Edges of /messages and /sync timelines that clients (and SyTest) rely on."""

from __future__ import annotations

import json
from urllib.parse import quote

from nio import RoomPreset


async def test_messages_end_present_while_events_come_back(server):
    """`end` comes with every page that returned events, even the one reaching the start
    of the room; the page after it is empty and has no `end`."""
    alice = await server.client()
    room_id = (await alice.room_create()).room_id
    await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "x"})
    path = f"/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=100"
    status, body = await server.request("GET", path, token=alice.access_token)
    assert status == 200 and body["chunk"] and "end" in body
    status, body = await server.request(
        "GET", f"{path}&from={body['end']}", token=alice.access_token
    )
    assert status == 200 and body["chunk"] == [] and "end" not in body

    # Forwards from a sync's next_batch: the new event, and where to go on from.
    sync = await alice.sync(timeout=0)
    sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "y"})
    status, body = await server.request(
        "GET",
        f"/_matrix/client/v3/rooms/{room_id}/messages?dir=f&from={sync.next_batch}",
        token=alice.access_token,
    )
    assert [e["event_id"] for e in body["chunk"]] == [sent.event_id] and "end" in body


async def test_newly_joined_room_in_incremental_sync_is_limited(server):
    """The history before a newly joined room's timeline is unknown to the client."""
    alice = await server.client()
    bob = await server.client()
    room_id = (await alice.room_create(preset=RoomPreset.public_chat)).room_id
    for i in range(3):
        await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": str(i)})
    spec = {"room": {"timeline": {"types": ["m.room.message"], "limit": 10}}}
    path = "/_matrix/client/v3/sync?filter=" + quote(json.dumps(spec))
    status, first = await server.request("GET", path, token=bob.access_token)
    await bob.join(room_id)
    status, body = await server.request(
        "GET", f"{path}&since={first['next_batch']}", token=bob.access_token
    )
    assert status == 200
    timeline = body["rooms"]["join"][room_id]["timeline"]
    assert len(timeline["events"]) == 3
    assert timeline["limited"] is True


async def test_current_state_shows_in_timeline_despite_joined_history(server):
    """In a "joined"-history room, a join that happened while the syncer was away is
    current state: the syncer sees it in the timeline after rejoining. A message of that
    time stays hidden."""
    creator = await server.client()
    syncer = await server.client()
    invitee = await server.client()
    room_id = (await creator.room_create(preset=RoomPreset.public_chat)).room_id
    await syncer.join(room_id)
    await creator.room_put_state(
        room_id, "m.room.history_visibility", {"history_visibility": "joined"}
    )
    await creator.room_invite(room_id, invitee.user_id)
    first = await syncer.sync(timeout=0)
    await syncer.room_leave(room_id)
    await invitee.join(room_id)
    await creator.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "away"})
    await syncer.join(room_id)
    status, body = await server.request(
        "GET", f"/_matrix/client/v3/sync?since={first.next_batch}", token=syncer.access_token
    )
    assert status == 200
    timeline = body["rooms"]["join"][room_id]["timeline"]["events"]
    assert any(
        e["type"] == "m.room.member"
        and e["state_key"] == invitee.user_id
        and e["content"]["membership"] == "join"
        for e in timeline
    )
    assert not any(e.get("content", {}).get("body") == "away" for e in timeline)


async def test_hidden_history_gives_its_timeline_places_to_older_visible_events(server):
    """Many messages hidden by "joined" history after a join that is current state: the
    timeline scans back past them, so it shows that join (the limit counts events shown),
    and none of the hidden messages."""
    creator = await server.client()
    syncer = await server.client()
    invitee = await server.client()
    room_id = (await creator.room_create(preset=RoomPreset.public_chat)).room_id
    await syncer.join(room_id)
    await creator.room_put_state(
        room_id, "m.room.history_visibility", {"history_visibility": "joined"}
    )
    await creator.room_invite(room_id, invitee.user_id)
    first = await syncer.sync(timeout=0)
    await syncer.room_leave(room_id)
    await invitee.join(room_id)
    for i in range(30):
        await creator.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": str(i)})
    await syncer.join(room_id)
    status, body = await server.request(
        "GET", f"/_matrix/client/v3/sync?since={first.next_batch}", token=syncer.access_token
    )
    assert status == 200
    timeline = body["rooms"]["join"][room_id]["timeline"]
    events = timeline["events"]
    assert any(
        e["type"] == "m.room.member"
        and e["state_key"] == invitee.user_id
        and e["content"]["membership"] == "join"
        for e in events
    )
    assert not any(e["type"] == "m.room.message" for e in events)
    assert events[-1]["state_key"] == syncer.user_id
    assert timeline["limited"] is True


async def test_room_joined_and_left_in_one_batch_has_its_state(server):
    alice = await server.client()
    bob = await server.client()
    room_id = (await alice.room_create(invite=[bob.user_id])).room_id
    await alice.room_put_state(room_id, "a.madeup.test.state", {"my_key": 1})
    spec = {
        "room": {
            "timeline": {"types": []},
            "state": {"types": ["a.madeup.test.state"]},
            "include_leave": True,
        }
    }
    path = "/_matrix/client/v3/sync?filter=" + quote(json.dumps(spec))
    status, first = await server.request("GET", path, token=bob.access_token)
    await bob.join(room_id)
    await bob.room_leave(room_id)
    status, body = await server.request(
        "GET", f"{path}&since={first['next_batch']}", token=bob.access_token
    )
    assert status == 200
    [state] = body["rooms"]["leave"][room_id]["state"]["events"]
    assert state["type"] == "a.madeup.test.state" and state["content"] == {"my_key": 1}


async def test_context_kick_and_redact_refusals(server):
    """/context of a room one never joined: 403; kicking a banned user: 403 (unban lifts a
    ban, a kick must not); redacting another room's event through this room: 400.
    None of them changes anything."""
    alice = await server.client()
    bob = await server.client()
    eve = await server.client()
    room_id = (await alice.room_create(preset=RoomPreset.public_chat)).room_id
    other_room = (await alice.room_create()).room_id
    sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "c"})
    status, body = await server.request(
        "GET", f"/_matrix/client/v3/rooms/{room_id}/context/{sent.event_id}", token=eve.access_token
    )
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"

    await bob.join(room_id)
    await alice.room_ban(room_id, bob.user_id)
    status, body = await server.request(
        "POST",
        f"/_matrix/client/v3/rooms/{room_id}/kick",
        token=alice.access_token,
        json={"user_id": bob.user_id},
    )
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    assert await server.hs.events.membership(room_id, bob.user_id) == "ban"

    status, body = await server.request(
        "PUT",
        f"/_matrix/client/v3/rooms/{other_room}/redact/{sent.event_id}/t1",
        token=alice.access_token,
        json={},
    )
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    ev = await server.hs.event_store.get_event(sent.event_id)
    assert ev.redacted_by is None
