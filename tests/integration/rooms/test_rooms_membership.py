"""Membership and moderation with matrix-nio: leave, kick, ban, unban, forget, redaction."""

from __future__ import annotations

from nio import (
    JoinResponse,
    RedactedEvent,
    RedactionEvent,
    RoomBanResponse,
    RoomContextResponse,
    RoomForgetResponse,
    RoomGetStateEventResponse,
    RoomKickResponse,
    RoomLeaveResponse,
    RoomMemberEvent,
    RoomMessageText,
    RoomPutStateResponse,
    RoomRedactResponse,
    RoomUnbanResponse,
)


async def _three_in_room(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    carol = await server.client("carol")
    created = await alice.room_create(name="Moderated", invite=[bob.user_id, carol.user_id])
    room_id = created.room_id
    for c in (bob, carol):
        assert isinstance(await c.join(room_id), JoinResponse)
    return alice, bob, carol, room_id


async def _joined(server, room_id):
    rows = await server.db.fetch(
        "SELECT state_key FROM current_state WHERE room_id = $1 AND type = 'm.room.member'"
        " AND membership = 'join'",
        room_id,
    )
    return {r["state_key"] for r in rows}


async def test_leave_kick_ban_unban(server):
    alice, bob, carol, room_id = await _three_in_room(server)
    assert await _joined(server, room_id) == {alice.user_id, bob.user_id, carol.user_id}
    await bob.sync(timeout=0)

    assert isinstance(await carol.room_leave(room_id), RoomLeaveResponse)
    assert isinstance(await alice.room_kick(room_id, bob.user_id, "off-topic"), RoomKickResponse)
    assert await _joined(server, room_id) == {alice.user_id}

    # Bob cannot kick or ban anyone: he is no longer a member, and had no power anyway.
    resp = await bob.room_ban(room_id, alice.user_id)
    assert not isinstance(resp, RoomBanResponse)

    sync = await bob.sync(timeout=0, since=bob.next_batch)
    assert room_id in sync.rooms.leave
    kicks = [
        e
        for e in sync.rooms.leave[room_id].timeline.events
        if isinstance(e, RoomMemberEvent) and e.state_key == bob.user_id
    ]
    assert kicks and kicks[-1].membership == "leave" and kicks[-1].sender == alice.user_id

    assert isinstance(await alice.room_ban(room_id, carol.user_id, "spam"), RoomBanResponse)
    resp = await carol.join(room_id)
    assert not isinstance(resp, JoinResponse)
    assert isinstance(await alice.room_unban(room_id, carol.user_id), RoomUnbanResponse)
    await alice.room_invite(room_id, carol.user_id)
    assert isinstance(await carol.join(room_id), JoinResponse)

    assert isinstance(await bob.room_forget(room_id), RoomForgetResponse)
    sync = await bob.sync(timeout=0, full_state=True)
    assert room_id not in sync.rooms.leave


async def test_a_banned_user_no_longer_reads_the_room_state(server):
    """A former member reads the state as it was when they left; a banned one reads
    nothing (as Synapse; SyTest 30rooms/07ban "Remote banned user is kicked")."""
    alice, bob, carol, room_id = await _three_in_room(server)
    assert isinstance(await bob.room_leave(room_id), RoomLeaveResponse)
    assert isinstance(await alice.room_ban(room_id, carol.user_id, "spam"), RoomBanResponse)
    await alice.room_put_state(room_id, "m.room.topic", {"topic": "after they went"})
    resp = await bob.room_get_state_event(room_id, "m.room.member", bob.user_id)
    assert isinstance(resp, RoomGetStateEventResponse), resp
    assert resp.content["membership"] == "leave"
    for path in (f"state/m.room.member/{carol.user_id}", "state", "members"):
        status, body = await server.request(
            "GET", f"/_matrix/client/v3/rooms/{room_id}/{path}", token=carol.access_token
        )
        assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), path


async def test_state_events_and_power(server):
    alice, bob, _carol, room_id = await _three_in_room(server)
    resp = await alice.room_put_state(room_id, "m.room.topic", {"topic": "Budget 2027"})
    assert isinstance(resp, RoomPutStateResponse)
    got = await bob.room_get_state_event(room_id, "m.room.topic")
    assert isinstance(got, RoomGetStateEventResponse) and got.content["topic"] == "Budget 2027"
    # A custom state event with an empty state key, as bots send it.
    resp = await alice.room_put_state(room_id, "org.example.settings", {"a": 1})
    assert isinstance(resp, RoomPutStateResponse)
    denied = await bob.room_put_state(room_id, "m.room.topic", {"topic": "nope"})
    assert not isinstance(denied, RoomPutStateResponse)

    # Read-modify-write of the power levels by the creator, as bots do.
    pl = await alice.room_get_state_event(room_id, "m.room.power_levels")
    content = dict(pl.content)
    content["users"] = {**content.get("users", {}), bob.user_id: 50}
    assert isinstance(
        await alice.room_put_state(room_id, "m.room.power_levels", content), RoomPutStateResponse
    )
    resp = await bob.room_put_state(room_id, "m.room.topic", {"topic": "Bob's topic"})
    assert isinstance(resp, RoomPutStateResponse)


async def test_redaction_removes_content(server):
    alice, bob, _carol, room_id = await _three_in_room(server)
    sent = await bob.room_send(
        room_id, "m.room.message", {"msgtype": "m.text", "body": "secret plan"}
    )
    # Alice (power 100) may redact Bob's event; Bob may not redact Alice's.
    mine = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "mine"})
    denied = await bob.room_redact(room_id, mine.event_id)
    assert not isinstance(denied, RoomRedactResponse)
    redacted = await alice.room_redact(room_id, sent.event_id, reason="leak")
    assert isinstance(redacted, RoomRedactResponse)
    stored = await server.db.fetchval("SELECT json FROM events WHERE event_id = $1", sent.event_id)
    assert "secret plan" not in stored
    ctx = await bob.room_context(room_id, sent.event_id, limit=4)
    assert isinstance(ctx, RoomContextResponse)
    assert ctx.event.source["content"] == {}
    assert ctx.event.source["unsigned"]["redacted_because"]["event_id"] == redacted.event_id
    # Synapse's `redacted_by` too, which SyTest and some clients read.
    assert ctx.event.source["unsigned"]["redacted_by"] == redacted.event_id
    # The whole redaction event, as the spec has it: nio reads who redacted and why from it.
    assert isinstance(ctx.event, RedactedEvent), ctx.event
    assert (ctx.event.redacter, ctx.event.reason) == (alice.user_id, "leak")
    sync = await bob.sync(timeout=0)
    events = sync.rooms.join[room_id].timeline.events
    assert any(isinstance(e, RedactionEvent) and e.redacts == sent.event_id for e in events)
    assert not any(isinstance(e, RoomMessageText) and e.body == "secret plan" for e in events)


async def test_a_user_without_the_redact_level_redacts_own_event_in_a_v1_room(server):
    """v1/v2 auth rules let such a redaction through when its event ID's domain is the
    redacted event's: the ID must be known when the rules are checked (SyTest
    32room-versions "Can receive redactions from regular users ... version 1")."""
    alice = await server.client("alice")
    bob = await server.client("bob")
    for version in ("1", "2"):
        room_id = (await alice.room_create(room_version=version, invite=[bob.user_id])).room_id
        assert isinstance(await bob.join(room_id), JoinResponse)
        sent = await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "x"})
        redacted = await bob.room_redact(room_id, sent.event_id)
        assert isinstance(redacted, RoomRedactResponse), redacted
        assert redacted.event_id.endswith(f":{server.server_name}")
        ctx = await alice.room_context(room_id, sent.event_id, limit=1)
        assert isinstance(ctx, RoomContextResponse)
        assert ctx.event.source["unsigned"]["redacted_by"] == redacted.event_id


async def test_txn_id_makes_sends_idempotent(server):
    alice, _bob, _carol, room_id = await _three_in_room(server)
    first = await alice.room_send(
        room_id, "m.room.message", {"msgtype": "m.text", "body": "once"}, tx_id="same-txn"
    )
    again = await alice.room_send(
        room_id, "m.room.message", {"msgtype": "m.text", "body": "once"}, tx_id="same-txn"
    )
    assert first.event_id == again.event_id
    count = await server.db.fetchval(
        "SELECT count(*) FROM events WHERE room_id = $1 AND type = 'm.room.message'", room_id
    )
    assert count == 1
    sync = await alice.sync(timeout=0)
    mine = [e for e in sync.rooms.join[room_id].timeline.events if e.event_id == first.event_id]
    assert mine[0].source["unsigned"]["transaction_id"] == "same-txn"


async def test_history_visibility_joined_hides_earlier_messages(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    created = await alice.room_create(
        name="Need to know",
        initial_state=[
            {"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}
        ],
    )
    room_id = created.room_id
    await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "before bob"})
    await alice.room_invite(room_id, bob.user_id)
    await bob.join(room_id)
    await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "after bob"})
    sync = await bob.sync(timeout=0)
    bodies = [
        e.body for e in sync.rooms.join[room_id].timeline.events if isinstance(e, RoomMessageText)
    ]
    assert bodies == ["after bob"]
    page = await bob.room_messages(room_id, sync.rooms.join[room_id].timeline.prev_batch, limit=50)
    assert not any(isinstance(e, RoomMessageText) and e.body == "before bob" for e in page.chunk)
