"""Storing events from other servers: timeline, soft-failed, rejected, outliers, backfill.

These drive EventService.persist_* directly with events built and signed as a remote server
would; the federation endpoints that call them have their own wire tests.
"""

from __future__ import annotations

import time

from nio import RoomMessagesResponse, RoomMessageText, SyncResponse
from signedjson.key import generate_signing_key

from homeserver.events.hashing import add_content_hash, compute_event_id
from homeserver.events.signing import sign_event

REMOTE = "remote.test"
BOB = f"@bob:{REMOTE}"
REMOTE_KEY = generate_signing_key("r1")


async def _remote_event(server, room_id, etype, content, *, state_key=None, prev=None, depth=None):
    """An event as the remote server would build it on top of our room's head."""
    hs = server.hs
    head = await hs.events.room_head(room_id)
    version = head.version
    event = {
        "room_id": room_id,
        "type": etype,
        "sender": BOB,
        "content": content,
        "origin_server_ts": int(time.time() * 1000),
        "depth": depth if depth is not None else head.depth + 1,
        "prev_events": list(prev if prev is not None else head.extremities),
        "auth_events": [
            head.state[k]
            for k in (
                ("m.room.power_levels", ""),
                ("m.room.join_rules", ""),
                ("m.room.member", BOB),
            )
            if k in head.state
        ],
    }
    if state_key is not None:
        event["state_key"] = state_key
    event = sign_event(add_content_hash(event), REMOTE, REMOTE_KEY, version)
    return compute_event_id(event, version), event


async def _join_bob(server, room_id):
    hs = server.hs
    event_id, event = await _remote_event(
        server, room_id, "m.room.member", {"membership": "join"}, state_key=BOB
    )
    before = dict((await hs.events.room_head(room_id)).state)
    await hs.events.persist_federated(room_id, event, event_id, state_before=before)
    return event_id


async def test_remote_join_and_message_reach_local_clients(server):
    alice = await server.client("alice")
    room_id = (await alice.room_create(name="Joint")).room_id
    first = await alice.sync(timeout=0)
    assert isinstance(first, SyncResponse)

    join_id = await _join_bob(server, room_id)
    msg_id, msg = await _remote_event(
        server, room_id, "m.room.message", {"msgtype": "m.text", "body": "from afar"}
    )
    state = dict((await server.hs.events.room_head(room_id)).state)
    await server.hs.events.persist_federated(room_id, msg, msg_id, state_before=state)

    sync = await alice.sync(timeout=0, since=first.next_batch)
    timeline = sync.rooms.join[room_id].timeline.events
    assert [e.event_id for e in timeline] == [join_id, msg_id]
    assert BOB in alice.rooms[room_id].users
    assert await server.hs.events.servers_in_room(room_id) == {"test.local", REMOTE}

    # A local event after them builds on the remote one, even after the head cache is lost.
    server.hs.events._heads.clear()
    reply = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "hi"})
    stored = await server.hs.event_store.get_event(reply.event_id)
    assert stored.event["prev_events"] == [msg_id]
    assert stored.event["depth"] == msg["depth"] + 1


async def test_soft_failed_rejected_and_outliers_stay_out_of_the_timeline(server):
    hs = server.hs
    alice = await server.client("alice")
    room_id = (await alice.room_create(name="Guarded")).room_id
    await _join_bob(server, room_id)
    head_before = list((await hs.events.room_head(room_id)).extremities)
    state = dict((await hs.events.room_head(room_id)).state)

    soft_id, soft = await _remote_event(
        server, room_id, "m.room.message", {"msgtype": "m.text", "body": "soft"}
    )
    await hs.events.persist_federated(
        room_id, soft, soft_id, state_before=state, outcome="soft_failed", reason="banned"
    )
    bad_id, bad = await _remote_event(
        server, room_id, "m.room.topic", {"topic": "hijack"}, state_key=""
    )
    await hs.events.persist_federated(
        room_id, bad, bad_id, state_before=state, outcome="rejected", reason="auth"
    )
    out_id, out = await _remote_event(
        server, room_id, "m.room.message", {"msgtype": "m.text", "body": "outlier"}
    )
    await hs.events.persist_outliers(room_id, [(out_id, out)])

    stored = await hs.event_store.get_events([soft_id, bad_id, out_id])
    assert {k: v.status for k, v in stored.items()} == {
        soft_id: "soft_failed",
        bad_id: "rejected",
        out_id: "outlier",
    }
    # Neither the forward extremities nor the current state moved.
    assert (await hs.events.room_head(room_id)).extremities == head_before
    assert ("m.room.topic", "") not in await hs.event_store.current_state_ids(room_id)
    # The soft-failed event can still be placed: the state after it is known.
    after = await hs.events.state_after_events([soft_id, out_id])
    assert set(after) == {soft_id}
    assert after[soft_id] == state

    messages = await alice.room_messages(room_id, alice.next_batch or "", limit=50)
    assert isinstance(messages, RoomMessagesResponse), messages
    ids = {e.event_id for e in messages.chunk}
    assert not ids & {soft_id, bad_id, out_id}


async def test_an_outlier_reaching_the_timeline_leaves_the_outlier_table(server):
    hs = server.hs
    alice = await server.client("alice")
    room_id = (await alice.room_create(name="Late")).room_id
    await _join_bob(server, room_id)
    msg_id, msg = await _remote_event(
        server, room_id, "m.room.message", {"msgtype": "m.text", "body": "twice"}
    )
    await hs.events.persist_outliers(room_id, [(msg_id, msg)])
    state = dict((await hs.events.room_head(room_id)).state)
    await hs.events.persist_federated(room_id, msg, msg_id, state_before=state)
    stored = await hs.event_store.get_event(msg_id)
    assert stored.status is None and stored.stream_ordering > 0
    count = await hs.db.fetchval("SELECT count(*) FROM event_outliers WHERE event_id = $1", msg_id)
    assert count == 0


async def test_resolved_current_state_replaces_the_branch_state(server):
    """A federated event on a fork: the caller passes the resolved state, which may drop or
    change entries that the event's own branch has."""
    hs = server.hs
    alice = await server.client("alice")
    room_id = (await alice.room_create(name="Fork", topic="original")).room_id
    await _join_bob(server, room_id)
    head = await hs.events.room_head(room_id)
    topic_before = head.state[("m.room.topic", "")]
    state = dict(head.state)
    topic_id, topic = await _remote_event(
        server, room_id, "m.room.topic", {"topic": "branch"}, state_key=""
    )
    resolved = dict(state)  # resolution kept the original topic
    await hs.events.persist_federated(
        room_id, topic, topic_id, state_before=state, current_state=resolved
    )
    current = await hs.event_store.current_state_ids(room_id)
    assert current[("m.room.topic", "")] == topic_before
    # The state at the event on its own branch still has its own topic.
    assert (await hs.events.state_after_events([topic_id]))[topic_id][
        ("m.room.topic", "")
    ] == topic_id
    # After losing the head cache, the state comes back as resolved.
    hs.events._heads.clear()
    assert (await hs.events.room_head(room_id)).state[("m.room.topic", "")] == topic_before


async def test_backfilled_history_pages_in_messages_but_not_in_sync(server):
    hs = server.hs
    alice = await server.client("alice")
    room_id = (await alice.room_create(name="Old")).room_id
    await _join_bob(server, room_id)
    first = await alice.sync(timeout=0)
    state = dict((await hs.events.room_head(room_id)).state)
    create_id = state[("m.room.create", "")]
    old_id, old = await _remote_event(
        server,
        room_id,
        "m.room.message",
        {"msgtype": "m.text", "body": "ancient"},
        prev=[create_id],
        depth=2,
    )
    await hs.events.persist_backfilled(room_id, [(old_id, old, state)])
    stored = await hs.event_store.get_event(old_id)
    assert stored.stream_ordering < 0

    sync = await alice.sync(timeout=0, since=first.next_batch)
    assert room_id not in sync.rooms.join
    messages = await alice.room_messages(room_id, first.next_batch, limit=50)
    bodies = [e.body for e in messages.chunk if isinstance(e, RoomMessageText)]
    assert bodies[-1] == "ancient"
