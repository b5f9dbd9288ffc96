"""The inbound PDU pipeline between two servers of ours (TLS from a test CA).

Until /send exists, events reach the receiving server through
hs.federation.inbound.handle_pdus, exactly what /send will call; everything the pipeline
asks of the sender (keys, get_missing_events, /event_auth, /state_ids, /event) goes over
the wire. Bad input (issue 4, item 10) must never change the room's state.
"""

from __future__ import annotations

import pytest
from nio import RoomMessageText, SyncResponse
from signedjson.key import generate_signing_key

from federation.events.checks import prev_event_ids
from homeserver.events.hashing import add_content_hash, compute_event_id
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.events.signing import hash_and_sign_event, sign_event
from tests.federation_rooms import deliver, make_event, pdus, shared_room
from tests.integration.federation.helpers import (
    eventually,
    new_txn_id,
    served,
    signed_request,
    transaction,
)


@pytest.fixture
async def room(make_server, ca):
    return await shared_room(make_server, ca)


async def _timeline_bodies(client, room_id, since=None) -> list[str]:
    sync = await client.sync(timeout=0, since=since, full_state=since is None)
    assert isinstance(sync, SyncResponse), sync
    room = sync.rooms.join.get(room_id)
    events = room.timeline.events if room else []
    return [e.body for e in events if isinstance(e, RoomMessageText)]


async def test_messages_cross_both_ways(room):
    first = await room.alice.sync(timeout=0)
    msg = await room.bob_says("hello from hs2")
    assert await deliver(room.hs2, room.hs1, [msg]) == {msg: {}}
    assert await _timeline_bodies(room.alice, room.room_id, first.next_batch) == ["hello from hs2"]
    reply = await room.alice.room_send(
        room.room_id, "m.room.message", {"msgtype": "m.text", "body": "hello from hs1"}
    )
    assert await deliver(room.hs1, room.hs2, [reply.event_id]) == {reply.event_id: {}}
    assert "hello from hs1" in await _timeline_bodies(room.bob, room.room_id)
    # Both sides agree on the room: same state, same single forward extremity.
    assert await room.state(room.hs1) == await room.state(room.hs2)
    assert await room.extremities(room.hs1) == await room.extremities(room.hs2)
    # Delivering again changes nothing.
    assert await deliver(room.hs1, room.hs2, [reply.event_id]) == {reply.event_id: {}}


async def test_missing_prev_events_come_from_get_missing_events(room):
    ids = [await room.bob_says(f"m{i}") for i in range(4)]
    assert await deliver(room.hs2, room.hs1, [ids[-1]]) == {ids[-1]: {}}
    for event_id in ids:
        assert await room.status(room.hs1, event_id) == "timeline"
    stored = await room.hs1.hs.event_store.get_events(ids)
    orderings = [stored[i].stream_ordering for i in ids]
    assert orderings == sorted(orderings)


async def test_a_gap_wider_than_get_missing_events_is_bridged_with_state_ids(room):
    await room.bob.set_displayname("Bob the Far")  # a state event lost in the gap
    ids = [await room.bob_says(f"m{i}") for i in range(13)]
    assert await deliver(room.hs2, room.hs1, [ids[-1]]) == {ids[-1]: {}}
    assert await room.status(room.hs1, ids[-1]) == "timeline"
    # get_missing_events brought the ten before it; the one before those was fetched as
    # an outlier to place the state after it; older ones stay unknown.
    assert [await room.status(room.hs1, i) for i in ids] == (
        ["missing", "outlier"] + ["timeline"] * 11
    )
    # The state after the gap came from hs2's /state_ids, with the new display name.
    member_id = (await room.state(room.hs1))[("m.room.member", room.bob.user_id)]
    member = await room.hs1.hs.event_store.get_event(member_id)
    assert member.content.get("displayname") == "Bob the Far"
    assert await room.state(room.hs1) == await room.state(room.hs2)


async def test_missing_auth_events_come_from_event_auth(room):
    await room.bob.set_displayname("Renamed")  # bob's member event: an auth event of what follows
    member_id = (await room.state(room.hs2))[("m.room.member", room.bob.user_id)]
    msg = await room.bob_says("after the rename")
    assert await deliver(room.hs2, room.hs1, [msg]) == {msg: {}}
    assert await room.status(room.hs1, member_id) == "timeline"
    assert await room.status(room.hs1, msg) == "timeline"


async def test_concurrent_state_changes_converge(room):
    """Both servers change the topic without seeing each other's change; after each
    receives the other's, state resolution gives both the same room state."""
    await _concurrent_state_changes_converge(room)


async def test_concurrent_state_changes_converge_in_room_version_1(make_server, ca):
    """State resolution v1 (SyTest "Outbound federation requests missing prev_events and
    then asks for /state_ids and resolves the state" uses a v1 room)."""
    room = await shared_room(make_server, ca, room_version="1")
    assert (await room.hs1.hs.events.room_head(room.room_id)).version.identifier == "1"
    await _concurrent_state_changes_converge(room)


async def _concurrent_state_changes_converge(room):
    content = {"users": {room.bob.user_id: 100}}  # Alice, the creator, is above levels
    if not (await room.hs1.hs.events.room_head(room.room_id)).version.creators_have_infinite_power:
        content["users"][room.alice.user_id] = 100  # (not before v12)
    pl = await room.alice.room_put_state(room.room_id, "m.room.power_levels", content)
    assert await deliver(room.hs1, room.hs2, [pl.event_id]) == {pl.event_id: {}}
    a = await room.alice.room_put_state(room.room_id, "m.room.topic", {"topic": "from hs1"})
    b = await room.bob.room_put_state(room.room_id, "m.room.topic", {"topic": "from hs2"})
    assert await deliver(room.hs2, room.hs1, [b.event_id]) == {b.event_id: {}}
    assert await deliver(room.hs1, room.hs2, [a.event_id]) == {a.event_id: {}}
    state1, state2 = await room.state(room.hs1), await room.state(room.hs2)
    assert state1 == state2
    assert state1[("m.room.topic", "")] in (a.event_id, b.event_id)
    assert await room.extremities(room.hs1) == sorted([a.event_id, b.event_id])
    # The next event merges the fork, and the other side accepts it.
    merge = await room.bob_says("merging")
    stored = await room.hs2.hs.event_store.get_event(merge)
    assert sorted(prev_event_ids(stored.event)) == sorted([a.event_id, b.event_id])
    assert await deliver(room.hs2, room.hs1, [merge]) == {merge: {}}
    assert await room.extremities(room.hs1) == [merge]
    assert await room.state(room.hs1) == await room.state(room.hs2)


# ---- bad input: never a change of state ------------------------------------------------


async def test_forged_signatures_are_refused(room):
    before = await room.state(room.hs1)
    event_id, event = await room.bad_event(
        room.bob.user_id, "m.room.topic", {"topic": "forged"}, ""
    )
    event["origin_server_ts"] += 1  # no longer what hs2 signed
    event = add_content_hash(event)
    forged_id = compute_event_id(event, KNOWN_ROOM_VERSIONS["12"])
    result = await room.hs1.hs.federation.inbound.handle_pdus(room.hs2.server_name, [event])
    assert "bad signature" in result[forged_id]["error"]
    # Signed with a key hs2 never published.
    _, event = await room.bad_event(room.bob.user_id, "m.room.topic", {"topic": "other key"}, "")
    event = {k: v for k, v in event.items() if k != "signatures"}
    rogue = generate_signing_key("rogue")
    event = sign_event(event, room.hs2.server_name, rogue, KNOWN_ROOM_VERSIONS["12"])
    rogue_id = compute_event_id(event, KNOWN_ROOM_VERSIONS["12"])
    result = await room.hs1.hs.federation.inbound.handle_pdus(room.hs2.server_name, [event])
    assert "error" in result[rogue_id]
    for bad in (forged_id, rogue_id, event_id):
        assert await room.status(room.hs1, bad) == "missing"
    assert await room.state(room.hs1) == before


async def test_wrong_content_hash_stores_the_redacted_event(room):
    first = await room.alice.sync(timeout=0)
    event_id, event = await room.bad_event(
        room.bob.user_id, "m.room.message", {"msgtype": "m.text", "body": "original"}
    )
    event["content"] = {"msgtype": "m.text", "body": "tampered in transit"}
    assert await room.hs1.hs.federation.inbound.handle_pdus(room.hs2.server_name, [event]) == {
        event_id: {}
    }
    stored = await room.hs1.hs.event_store.get_event(event_id)
    assert stored.status is None and stored.content == {}
    assert await _timeline_bodies(room.alice, room.room_id, first.next_batch) == []


async def test_event_failing_auth_is_rejected_and_changes_nothing(room):
    before, extremities = await room.state(room.hs1), await room.extremities(room.hs1)
    event_id, event = await room.bad_event(
        room.bob.user_id,
        "m.room.power_levels",
        {"users": {room.bob.user_id: 100}},
        "",
    )
    result = await room.hs1.hs.federation.inbound.handle_pdus(room.hs2.server_name, [event])
    assert result[event_id] == {}  # a rejection is not an error of processing
    assert await room.status(room.hs1, event_id) == "rejected"
    assert await room.state(room.hs1) == before
    assert await room.extremities(room.hs1) == extremities
    # An event built on the rejected one is placed on the state before it, and is itself
    # authorised against that state.
    msg_id, msg = await room.bad_event(
        room.bob.user_id,
        "m.room.message",
        {"msgtype": "m.text", "body": "after"},
        prev=[event_id],
    )
    assert await room.hs1.hs.federation.inbound.handle_pdus(room.hs2.server_name, [msg]) == {
        msg_id: {}
    }
    assert await room.state(room.hs1) == before


async def test_event_citing_wrong_auth_events_is_rejected(room):
    before = await room.state(room.hs1)
    state = dict((await room.hs1.hs.events.room_head(room.room_id)).state)
    # Alice's membership instead of Bob's: not an auth event Bob's message may cite.
    state[("m.room.member", room.bob.user_id)] = state[("m.room.member", room.alice.user_id)]
    event_id, event = await room.bad_event(
        room.bob.user_id, "m.room.message", {"msgtype": "m.text", "body": "x"}, state=state
    )
    result = await room.hs1.hs.federation.inbound.handle_pdus(room.hs2.server_name, [event])
    assert result[event_id] == {}  # a rejection is not an error of processing
    assert await room.status(room.hs1, event_id) == "rejected"
    assert await room.state(room.hs1) == before


async def test_event_citing_an_auth_event_twice_is_rejected(room):
    before = await room.state(room.hs1)
    _, event = await room.bad_event(
        room.bob.user_id, "m.room.message", {"msgtype": "m.text", "body": "x"}
    )
    unsigned = {k: v for k, v in event.items() if k not in ("hashes", "signatures")}
    unsigned["auth_events"] = [*event["auth_events"], event["auth_events"][0]]
    rv = KNOWN_ROOM_VERSIONS["12"]
    event = hash_and_sign_event(unsigned, room.hs2.server_name, room.hs2.hs.signing_key, rv)
    event_id = compute_event_id(event, rv)
    result = await room.hs1.hs.federation.inbound.handle_pdus(room.hs2.server_name, [event])
    assert result[event_id] == {}
    assert await room.status(room.hs1, event_id) == "rejected"
    assert await room.state(room.hs1) == before


async def test_ban_evasion_is_soft_failed(room):
    """Alice bans Bob on hs1; hs2 has not heard and Bob writes on: the message passes auth
    at its place in the DAG but not against the current state, so it is soft-failed."""
    first = await room.alice.sync(timeout=0)
    ban = await room.alice.room_ban(room.room_id, room.bob.user_id)
    assert ban.transport_response.status == 200
    before, extremities = await room.state(room.hs1), await room.extremities(room.hs1)
    msg = await room.bob_says("evading")
    assert await deliver(room.hs2, room.hs1, [msg]) == {msg: {}}
    assert await room.status(room.hs1, msg) == "soft_failed"
    assert await room.state(room.hs1) == before
    assert await room.extremities(room.hs1) == extremities
    assert await _timeline_bodies(room.alice, room.room_id, first.next_batch) == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.pop("sender"),
        lambda e: e.pop("hashes"),
        lambda e: e.update(depth="7"),
        lambda e: e.update(content="not an object"),
        lambda e: e.update(prev_events=[f"$p{i}" for i in range(21)]),
        lambda e: e["content"].update(big="x" * 70_000),
        lambda e: e["content"].update(number=1.5),
    ],
    ids=["no-sender", "no-hashes", "string-depth", "bad-content", "21-prevs", "huge", "float"],
)
async def test_malformed_pdus_change_nothing(room, mutate):
    before, extremities = await room.state(room.hs1), await room.extremities(room.hs1)
    _, event = await room.bad_event(room.bob.user_id, "m.room.topic", {"topic": "bad"}, "")
    mutate(event)
    event_id = compute_event_id(event, KNOWN_ROOM_VERSIONS["12"])
    result = await room.hs1.hs.federation.inbound.handle_pdus(room.hs2.server_name, [event])
    assert result[event_id]["error"].startswith("invalid PDU")
    assert await room.status(room.hs1, event_id) == "missing"
    assert await room.state(room.hs1) == before
    assert await room.extremities(room.hs1) == extremities


async def test_pdus_we_cannot_place_are_answered_or_ignored(room):
    inbound = room.hs1.hs.federation.inbound
    before = await room.state(room.hs1)
    # Not objects, or without a room: nothing to answer under.
    assert await inbound.handle_pdus(room.hs2.server_name, [None, 5, "x", {}]) == {}
    # A room we do not know.
    _, event = await room.bad_event(room.bob.user_id, "m.room.message", {"body": "?"})
    event["room_id"] = "!unknown:hs2.test.local"
    assert await inbound.handle_pdus(room.hs2.server_name, [event]) == {}
    # A create event: in room version 12 it names no room, so it is not answered.
    create_id = (await room.state(room.hs1))[("m.room.create", "")]
    [create] = await pdus(room.hs1, [create_id])
    assert await inbound.handle_pdus(room.hs2.server_name, [create]) == {}
    # Given a room_id, it is malformed in this room version.
    create_with_room = {**create, "room_id": room.room_id}
    result = await inbound.handle_pdus(room.hs2.server_name, [create_with_room])
    [answer] = result.values()  # under the id of what was sent, room_id included
    assert answer["error"].startswith("invalid PDU")
    assert await room.state(room.hs1) == before


async def test_server_acl_refuses_a_denied_origin(room):
    acl = {"allow": ["*"], "deny": ["hs2.test.local"]}
    await room.alice.room_put_state(room.room_id, "m.room.server_acl", acl)
    assert not await room.hs1.hs.federation.acl_allows(room.room_id, room.hs2.server_name)
    assert await room.hs1.hs.federation.acl_allows(room.room_id, "hs3.test.local")
    before = await room.state(room.hs1)
    event_id, event = await room.bad_event(room.bob.user_id, "m.room.message", {"body": "hi"})
    result = await room.hs1.hs.federation.inbound.handle_pdus(room.hs2.server_name, [event])
    assert "ACL" in result[event_id]["error"]
    assert await room.status(room.hs1, event_id) == "missing"
    assert await room.state(room.hs1) == before


async def test_redactions_apply_when_the_sender_may_redact(room):
    mine = await room.bob_says("regret")
    theirs = await room.say(room.alice, "alice's words")
    assert await deliver(room.hs2, room.hs1, [mine]) == {mine: {}}
    redaction = await room.bob.room_redact(room.room_id, mine, reason="oops")
    assert await deliver(room.hs2, room.hs1, [redaction.event_id]) == {redaction.event_id: {}}
    stored = await room.hs1.hs.event_store.get_event(mine)
    assert stored.content == {} and stored.redacted_by == redaction.event_id
    # Bob (power 0) may send a redaction of Alice's message, but it redacts nothing.
    bad_id, bad = await room.bad_event(room.bob.user_id, "m.room.redaction", {"redacts": theirs})
    assert await room.hs1.hs.federation.inbound.handle_pdus(room.hs2.server_name, [bad]) == {
        bad_id: {}
    }
    stored = await room.hs1.hs.event_store.get_event(theirs)
    assert stored.content["body"] == "alice's words" and stored.redacted_by is None


EVENT_AUTH = "/_matrix/federation/v1/event_auth/{room_id}/{event_id}"
STATE_IDS = "/_matrix/federation/v1/state_ids/{room_id}"


async def test_auth_events_brought_by_get_missing_events_need_no_event_auth(room):
    """SyTest 36state "/state returns M_NOT_FOUND for an outlier": the sender's new member
    event is both an auth event and a prev event of its message; get_missing_events
    brings it, so the origin is not asked for /event_auth first (SyTest answers none)."""
    await room.bob.set_displayname("Renamed again")
    member_id = (await room.state(room.hs2))[("m.room.member", room.bob.user_id)]
    msg = await room.bob_says("after the rename")
    asked = served("GET", EVENT_AUTH)
    assert await deliver(room.hs2, room.hs1, [msg]) == {msg: {}}
    assert served("GET", EVENT_AUTH) == asked
    assert await room.status(room.hs1, member_id) == "timeline"
    assert await room.status(room.hs1, msg) == "timeline"


async def test_a_sent_event_whose_prev_events_stay_missing_is_refused(room):
    """SyTest 36state "Federation rejects inbound events where the prev_events cannot be
    found": a prev event that get_missing_events does not bring is not bridged with the
    origin's /state_ids for an event sent to us (only for events we fetched)."""
    hidden = await room.bob_says("hs2 has it, hs1 never gets it")
    before, extremities = await room.state(room.hs1), await room.extremities(room.hs1)
    # Built on `hidden` but never stored on hs2: its get_missing_events finds nothing.
    event_id, event = await make_event(
        room.hs2, room.hs2, room.room_id, room.bob.user_id, "m.room.message", {"body": "?"}
    )
    asked = served("GET", STATE_IDS)
    result = await room.hs1.hs.federation.inbound.handle_pdus(room.hs2.server_name, [event])
    assert "prev_events" in result[event_id]["error"]
    assert served("GET", STATE_IDS) == asked
    assert [await room.status(room.hs1, e) for e in (hidden, event_id)] == ["missing"] * 2
    assert await room.state(room.hs1) == before
    assert await room.extremities(room.hs1) == extremities


async def test_a_redaction_of_another_rooms_event_is_kept_from_clients(room):
    """SyTest 39redactions: a redaction naming an event of another room passes the auth
    rules (v3+ do not look at the target) but is soft-failed: no client sees it, nothing
    is redacted."""
    other = await room.alice.room_create(name="elsewhere")
    target = await room.say_in(room.alice, other.room_id, "not yours")
    first = await room.alice.sync(timeout=0)
    bad_id, bad = await room.bad_event(room.bob.user_id, "m.room.redaction", {"redacts": target})
    assert await room.hs1.hs.federation.inbound.handle_pdus(room.hs2.server_name, [bad]) == {
        bad_id: {}
    }
    assert await room.status(room.hs1, bad_id) == "soft_failed"
    stored = await room.hs1.hs.event_store.get_event(target)
    assert stored.content["body"] == "not yours" and stored.redacted_by is None
    sync = await room.alice.sync(timeout=0, since=first.next_batch)
    joined = sync.rooms.join.get(room.room_id)
    assert bad_id not in [e.event_id for e in (joined.timeline.events if joined else [])]


# ---- the same over PUT /send, with the outbound queues running ---------------------------


async def test_chat_both_ways_over_send(make_server, ca):
    room = await shared_room(make_server, ca, outbound=True)
    first = await room.alice.sync(timeout=0)
    msg = await room.bob_says("over /send")

    async def arrived(server, event_id):
        return await room.status(server, event_id) == "timeline"

    await eventually(lambda: arrived(room.hs1, msg))
    assert await _timeline_bodies(room.alice, room.room_id, first.next_batch) == ["over /send"]
    reply = await room.say(room.alice, "back over /send")
    await eventually(lambda: arrived(room.hs2, reply))
    assert await room.state(room.hs1) == await room.state(room.hs2)


async def test_bad_pdus_over_send_change_nothing(room, ca):
    before, extremities = await room.state(room.hs1), await room.extremities(room.hs1)
    rv = KNOWN_ROOM_VERSIONS["12"]
    _, forged = await room.bad_event(room.bob.user_id, "m.room.topic", {"topic": "forged"}, "")
    forged["origin_server_ts"] += 1
    forged = add_content_hash(forged)
    _, rejected = await room.bad_event(
        room.bob.user_id, "m.room.power_levels", {"users": {room.bob.user_id: 100}}, ""
    )
    _, tampered = await room.bad_event(room.bob.user_id, "m.room.name", {"name": "x"}, "")
    tampered["content"]["name"] = "tampered"
    _, malformed = await room.bad_event(room.bob.user_id, "m.room.topic", {"topic": "m"}, "")
    malformed["depth"] = "deep"
    pdus_sent = [forged, rejected, tampered, malformed]
    ids = [compute_event_id(p, rv) for p in pdus_sent]
    path = f"/_matrix/federation/v1/send/{new_txn_id()}"
    status, body = await signed_request(
        room.hs2, room.hs1, ca, "PUT", path, transaction(room.hs2.server_name, pdus_sent)
    )
    assert status == 200, body
    results = body["pdus"]
    assert "bad signature" in results[ids[0]]["error"]
    assert results[ids[1]] == {}  # stored as rejected: a judgement, not an error
    assert results[ids[3]]["error"].startswith("invalid PDU")
    # The tampered name lost its content to the hash check: redacted, it is not allowed
    # (Bob may not set the name) and changes nothing either.
    assert [await room.status(room.hs1, i) for i in ids] == [
        "missing",
        "rejected",
        "rejected",
        "missing",
    ]
    assert await room.state(room.hs1) == before
    assert await room.extremities(room.hs1) == extremities


async def test_a_transaction_stores_its_to_device_messages_before_its_events(room, ca):
    """A Megolm room key travels as a to-device message queued before the message it
    decrypts; the receiver stores the to-device part first, so no /sync can show the
    event without its key (found as a flaky encrypted chat between two servers)."""
    import asyncio

    import asyncpg

    send = "/_matrix/federation/v1/send/"

    msg = await room.bob_says("needs the key first")
    [pdu] = await pdus(room.hs2, [msg])
    key_edu = {
        "edu_type": "m.direct_to_device",
        "content": {
            "sender": room.bob.user_id,
            "type": "m.room.encrypted",
            "message_id": new_txn_id(),
            "messages": {room.alice.user_id: {"*": {"ciphertext": "the room key"}}},
        },
    }
    # Hold the events table: the PDU cannot be stored until the lock goes.
    blocker = await asyncpg.connect(room.hs1.hs.db.dsn)
    try:
        lock = blocker.transaction()
        await lock.start()
        await blocker.execute("LOCK TABLE events IN EXCLUSIVE MODE")
        sending = asyncio.ensure_future(
            signed_request(
                room.hs2,
                room.hs1,
                ca,
                "PUT",
                send + new_txn_id(),
                transaction(room.hs2.server_name, pdus=[pdu], edus=[key_edu]),
            )
        )

        async def key_stored() -> bool:
            return bool(
                await room.hs1.db.fetchval(
                    "SELECT count(*) FROM to_device_messages WHERE user_id = $1",
                    room.alice.user_id,
                )
            )

        await eventually(key_stored)
        assert not sending.done()  # the event is still waiting for the lock
        await lock.rollback()
        status, body = await sending
    finally:
        await blocker.close()
    assert (status, body) == (200, {"pdus": {msg: {}}})
