"""Ignoring users (m.ignored_user_list): hidden from /sync timelines and invites, unread
counts, /messages, /context, /relations and /threads (matrix-nio where it has the call,
raw HTTP for the rest and bad input); state events of ignored users stay visible."""

from __future__ import annotations

from urllib.parse import quote

from nio import RoomContextResponse, RoomMessagesResponse, RoomSendResponse
from nio.api import RelationshipType

from tests.integration.sliding_sync.helpers import Connection, list_ids
from tests.schema import assert_matches_schema

V1 = "/_matrix/client/v1"
V3 = "/_matrix/client/v3"


async def _send(client, room_id, body, **rel) -> str:
    content = {"msgtype": "m.text", "body": body}
    if rel:
        content["m.relates_to"] = rel
    resp = await client.room_send(room_id, "m.room.message", content)
    assert isinstance(resp, RoomSendResponse), resp
    return resp.event_id


async def _ignore(server, client, *users):
    return await server.request(
        "PUT",
        f"{V3}/user/{quote(client.user_id)}/account_data/m.ignored_user_list",
        token=client.access_token,
        json={"ignored_users": {u: {} for u in users}},
    )


async def _setup(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    carol = await server.client("carol")
    room = (
        await alice.room_create(
            name="ignore",
            invite=[bob.user_id, carol.user_id],
            # Bob may set the topic: a state event of an ignored user, which stays shown.
            power_level_override={"users": {bob.user_id: 50}},
        )
    ).room_id
    await bob.join(room)
    await carol.join(room)
    return alice, bob, carol, room


async def _timeline_ids(alice, room):
    sync = await alice.sync(
        timeout=0, full_state=True, sync_filter={"room": {"timeline": {"limit": 50}}}
    )
    return [e.event_id for e in sync.rooms.join[room].timeline.events], sync


async def test_ignored_users_hidden_everywhere(server):
    alice, bob, carol, room = await _setup(server)
    from_bob = await _send(bob, room, "from bob")
    from_carol = await _send(carol, room, "from carol")
    bob_root = await _send(bob, room, "bob's thread")
    carol_root = await _send(carol, room, "carol's thread")
    bob_reply = await _send(bob, room, "bob replies", rel_type="m.thread", event_id=carol_root)
    carol_reply = await _send(
        carol, room, "carol replies", rel_type="m.thread", event_id=carol_root
    )
    topic = (await bob.room_put_state(room, "m.room.topic", {"topic": "bob's topic"})).event_id

    ids, sync = await _timeline_ids(alice, room)
    assert {from_bob, bob_root, bob_reply} <= set(ids)
    counted = sync.rooms.join[room].unread_notifications.notification_count
    assert counted >= 6

    status, body = await _ignore(server, alice, bob.user_id)
    assert status == 200, body

    # /sync: bob's messages are gone, his state event stays; counts leave him out.
    ids, sync = await _timeline_ids(alice, room)
    assert not {from_bob, bob_root, bob_reply} & set(ids)
    assert {from_carol, carol_root, carol_reply, topic} <= set(ids)
    assert sync.rooms.join[room].unread_notifications.notification_count == counted - 3

    # /messages
    resp = await alice.room_messages(room, sync.next_batch, limit=50)
    assert isinstance(resp, RoomMessagesResponse), resp
    got = {e.event_id for e in resp.chunk}
    assert from_carol in got and topic in got and from_bob not in got and bob_reply not in got

    # /context: around carol's message, and bob's own message is not found.
    ctx = await alice.room_context(room, from_carol, limit=10)
    assert isinstance(ctx, RoomContextResponse), ctx
    around = {e.event_id for e in (*ctx.events_before, *ctx.events_after)}
    assert bob_root not in around and from_bob not in around and carol_root in around
    status, body = await server.request(
        "GET", f"{V3}/rooms/{room}/context/{quote(from_bob)}", token=alice.access_token
    )
    assert (status, body["errcode"]) == (404, "M_NOT_FOUND")

    # /relations and /threads
    replies = [
        e.event_id
        async for e in alice.room_get_event_relations(room, carol_root, RelationshipType.thread)
    ]
    assert replies == [carol_reply]
    status, body = await server.request(
        "GET", f"{V1}/rooms/{room}/threads", token=alice.access_token
    )
    assert status == 200
    assert_matches_schema("threads_list.yaml", "/rooms/{roomId}/threads", "get", 200, body)
    roots = [e["event_id"] for e in body["chunk"]]
    assert carol_root in roots and bob_root not in roots
    # Bob's reply counts in no thread summary either.
    assert (
        body["chunk"][roots.index(carol_root)]["unsigned"]["m.relations"]["m.thread"]["count"] == 1
    )

    # Carol, who ignores nobody, sees everything.
    status, body = await server.request(
        "GET", f"{V1}/rooms/{room}/relations/{quote(carol_root)}", token=carol.access_token
    )
    assert {e["event_id"] for e in body["chunk"]} == {bob_reply, carol_reply}

    # Un-ignoring brings bob back.
    assert (await _ignore(server, alice))[0] == 200
    ids, _ = await _timeline_ids(alice, room)
    assert from_bob in ids


async def test_invites_from_ignored_users_are_hidden(server):
    alice = await server.client("alice")
    bob = await server.client("bob")
    carol = await server.client("carol")
    assert (await _ignore(server, alice, bob.user_id))[0] == 200
    from_bob = (await bob.room_create(invite=[alice.user_id])).room_id
    from_carol = (await carol.room_create(invite=[alice.user_id])).room_id
    sync = await alice.sync(timeout=0)
    assert from_carol in sync.rooms.invite
    assert from_bob not in sync.rooms.invite
    # The invite itself stands: alice may still join.
    assert (await server.hs.events.membership(from_bob, alice.user_id)) == "invite"


async def test_malformed_ignore_list_is_refused_and_changes_nothing(server):
    alice, bob, _, room = await _setup(server)
    assert (await _ignore(server, alice, bob.user_id))[0] == 200
    path = f"{V3}/user/{quote(alice.user_id)}/account_data/m.ignored_user_list"
    for body in ({}, {"ignored_users": [bob.user_id]}, {"ignored_users": {"bob": {}}}):
        status, answer = await server.request("PUT", path, token=alice.access_token, json=body)
        assert (status, answer["errcode"]) == (400, "M_BAD_JSON")
    status, stored = await server.request("GET", path, token=alice.access_token)
    assert stored == {"ignored_users": {bob.user_id: {}}}
    from_bob = await _send(bob, room, "still ignored")
    ids, _ = await _timeline_ids(alice, room)
    assert from_bob not in ids


async def test_sliding_sync_hides_ignored_users(server):
    alice, bob, carol, room = await _setup(server)
    from_bob = await _send(bob, room, "from bob")
    from_carol = await _send(carol, room, "from carol")
    assert (await _ignore(server, alice, bob.user_id))[0] == 200
    invite = (await bob.room_create(invite=[alice.user_id])).room_id
    conn = Connection(server, alice.access_token)
    resp = await conn.sync({"lists": {"all": {"ranges": [[0, 20]], "timeline_limit": 20}}})
    assert invite not in list_ids(resp, "all") and room in list_ids(resp, "all")
    ids = [e["event_id"] for e in resp["rooms"][room]["timeline"]]
    assert from_carol in ids and from_bob not in ids
    # Bob's join (a state event) stays.
    assert any(
        e["type"] == "m.room.member" and e["sender"] == bob.user_id
        for e in resp["rooms"][room]["timeline"]
    )
