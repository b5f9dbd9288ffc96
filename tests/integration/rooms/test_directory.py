"""Aliases, room directory, public room list and user directory, with matrix-nio."""

from __future__ import annotations

from urllib.parse import quote

from nio import (
    JoinResponse,
    RoomCreateResponse,
    RoomPreset,
    RoomPutAliasResponse,
    RoomResolveAliasError,
    RoomResolveAliasResponse,
    RoomVisibility,
)

V3 = "/_matrix/client/v3"


# Sent explicitly rather than relying on the preset alone, so these tests check the
# directory, not room creation.
PUBLIC_JOIN = {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "public"}}


async def _room(client, **kw) -> str:
    if kw.get("preset") == RoomPreset.public_chat:
        kw["initial_state"] = [PUBLIC_JOIN]
    resp = await client.room_create(**kw)
    assert isinstance(resp, RoomCreateResponse), resp
    return resp.room_id


async def test_alias_lifecycle(server):
    alice = await server.client()
    room_id = await _room(alice)
    alias = f"#lobby:{server.server_name}"
    resp = await alice.room_put_alias(alias, room_id)
    assert isinstance(resp, RoomPutAliasResponse), resp
    resp = await alice.room_resolve_alias(alias)
    assert isinstance(resp, RoomResolveAliasResponse), resp
    assert resp.room_id == room_id and resp.servers == [server.server_name]

    status, body = await server.request(
        "PUT",
        f"{V3}/directory/room/{quote(alias)}",
        token=alice.access_token,
        json={"room_id": room_id},
    )
    assert status == 409 and body["errcode"] == "M_UNKNOWN"
    status, body = await server.request(
        "GET", f"{V3}/rooms/{room_id}/aliases", token=alice.access_token
    )
    assert status == 200 and body == {"aliases": [alias]}

    await alice.room_delete_alias(alias)
    resp = await alice.room_resolve_alias(alias)
    assert isinstance(resp, RoomResolveAliasError) and resp.status_code == "M_NOT_FOUND"


async def test_alias_bad_input_and_permissions(server):
    alice, bob = await server.client(), await server.client()
    room_id = await _room(alice, preset=RoomPreset.public_chat)
    token = alice.access_token
    for alias in ("lobby", "#nocolon", "#:test.local", "#x:elsewhere.org", "#a b:test.local"):
        alias = quote(alias)
        status, body = await server.request(
            "PUT", f"{V3}/directory/room/{quote(alias)}", token=token, json={"room_id": room_id}
        )
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), alias
    status, body = await server.request(
        "PUT",
        f"{V3}/directory/room/%23x:test.local",
        token=token,
        json={"room_id": "!nope:test.local"},
    )
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    # Bob is not in the room: he may not alias it.
    status, body = await server.request(
        "PUT",
        f"{V3}/directory/room/%23bob:test.local",
        token=bob.access_token,
        json={"room_id": room_id},
    )
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    assert await server.db.fetchval("SELECT count(*) FROM room_aliases") == 0

    alias = f"#mine:{server.server_name}"
    await alice.room_put_alias(alias, room_id)
    assert isinstance(await bob.join(room_id), JoinResponse)
    status, body = await server.request(
        "DELETE", f"{V3}/directory/room/{quote(alias)}", token=bob.access_token
    )
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    status, body = await server.request(
        "DELETE", f"{V3}/directory/room/%23ghost:test.local", token=token
    )
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"
    # Bob made his own alias; Alice, the room's admin, may delete it.
    bob_alias = f"#bob:{server.server_name}"
    assert isinstance(await bob.room_put_alias(bob_alias, room_id), RoomPutAliasResponse)
    status, body = await server.request(
        "DELETE", f"{V3}/directory/room/{quote(bob_alias)}", token=token
    )
    assert status == 200, (body, await server.db.fetch("SELECT * FROM room_aliases"))
    eve = await server.client()
    status, body = await server.request(
        "GET", f"{V3}/rooms/{room_id}/aliases", token=eve.access_token
    )
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"


async def test_room_visibility_and_public_rooms(server):
    alice, bob = await server.client(), await server.client()
    room_id = await _room(alice, name="Town square", topic="All things town")
    status, body = await server.request("GET", f"{V3}/directory/list/room/{room_id}")
    assert status == 200 and body == {"visibility": "private"}
    status, body = await server.request(
        "PUT",
        f"{V3}/directory/list/room/{room_id}",
        token=bob.access_token,
        json={"visibility": "public"},
    )
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"
    status, body = await server.request(
        "PUT",
        f"{V3}/directory/list/room/{room_id}",
        token=alice.access_token,
        json={"visibility": "open"},
    )
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"
    status, _ = await server.request(
        "PUT",
        f"{V3}/directory/list/room/{room_id}",
        token=alice.access_token,
        json={"visibility": "public"},
    )
    assert status == 200
    status, body = await server.request("GET", f"{V3}/directory/list/room/{room_id}")
    assert body == {"visibility": "public"}

    resp = await bob.list_public_rooms()
    assert [r.room_id for r in resp.public_rooms] == [room_id]
    room = resp.public_rooms[0]
    assert room.name == "Town square" and room.topic == "All things town"
    assert room.num_joined_members == 1
    status, body = await server.request("GET", f"{V3}/directory/list/room/!nope:test.local")
    assert status == 404 and body["errcode"] == "M_NOT_FOUND"


async def test_public_rooms_summary_filter_and_paging(server):
    alice, bob = await server.client(), await server.client()
    big = await _room(
        alice,
        visibility=RoomVisibility.public,
        alias="square",
        name="Square",
        topic="Meet here",
        preset=RoomPreset.public_chat,
    )
    await bob.join(big)
    small = await _room(alice, visibility=RoomVisibility.public, name="Garden")
    await _room(alice, name="Hidden")  # not published
    space = await _room(alice, visibility=RoomVisibility.public, name="Space", space=True)

    status, body = await server.request("GET", f"{V3}/publicRooms")
    assert status == 200
    assert body["total_room_count_estimate"] == 3
    first = body["chunk"][0]
    assert first == {
        "room_id": big,
        "name": "Square",
        "topic": "Meet here",
        "canonical_alias": f"#square:{server.server_name}",
        "num_joined_members": 2,
        "world_readable": False,
        "guest_can_join": False,
        "join_rule": "public",
    }
    assert {c["room_id"] for c in body["chunk"]} == {big, small, space}
    assert next(c for c in body["chunk"] if c["room_id"] == space)["room_type"] == "m.space"

    status, page1 = await server.request("GET", f"{V3}/publicRooms?limit=2")
    assert len(page1["chunk"]) == 2 and "next_batch" in page1
    status, page2 = await server.request(
        "GET", f"{V3}/publicRooms?limit=2&since={page1['next_batch']}"
    )
    assert len(page2["chunk"]) == 1 and "next_batch" not in page2 and "prev_batch" in page2
    seen = [c["room_id"] for c in page1["chunk"] + page2["chunk"]]
    assert sorted(seen) == sorted([big, small, space])

    token = bob.access_token
    status, body = await server.request(
        "POST", f"{V3}/publicRooms", token=token, json={"filter": {"generic_search_term": "gard"}}
    )
    assert [c["room_id"] for c in body["chunk"]] == [small]
    status, body = await server.request(
        "POST", f"{V3}/publicRooms", token=token, json={"filter": {"room_types": ["m.space"]}}
    )
    assert [c["room_id"] for c in body["chunk"]] == [space]
    status, body = await server.request(
        "POST", f"{V3}/publicRooms", token=token, json={"filter": {"room_types": [None]}}
    )
    assert {c["room_id"] for c in body["chunk"]} == {big, small}

    for path, method, payload, errcode in (
        (f"{V3}/publicRooms?since=garbage", "GET", None, "M_INVALID_PARAM"),
        (f"{V3}/publicRooms?limit=-1", "GET", None, "M_INVALID_PARAM"),
        (f"{V3}/publicRooms", "POST", {"limit": "ten"}, "M_BAD_JSON"),
        (f"{V3}/publicRooms", "POST", {"filter": {"room_types": [3]}}, "M_INVALID_PARAM"),
    ):
        status, body = await server.request(method, path, token=token, json=payload)
        assert (status, body["errcode"]) == (400, errcode), path
    # Another server's directory is fetched over federation, for signed-in users only,
    # and only from admitted servers (this one admits none).
    status, body = await server.request("GET", f"{V3}/publicRooms?server=other.example")
    assert status == 401 and body["errcode"] == "M_MISSING_TOKEN"
    status, body = await server.request(
        "GET", f"{V3}/publicRooms?server=other.example", token=token
    )
    assert status == 403 and body["errcode"] == "M_FORBIDDEN"


async def test_user_directory_search(server):
    alice = await server.client("alice")
    bob = await server.client("bobby")
    carol = await server.client("carol")
    dave = await server.client("dave")
    await bob.set_displayname("Bob Builder")
    await carol.set_displayname("Carol in public")
    await dave.set_displayname("Dave Hidden")
    shared = await _room(alice, invite=[bob.user_id])
    await bob.join(shared)
    public = await _room(carol, preset=RoomPreset.public_chat)
    assert public
    await _room(dave)  # a private room Alice is not in

    async def search(term, limit=10):
        status, body = await server.request(
            "POST",
            f"{V3}/user_directory/search",
            token=alice.access_token,
            json={"search_term": term, "limit": limit},
        )
        assert status == 200, body
        return body

    body = await search("builder")
    assert body == {
        "results": [{"user_id": bob.user_id, "display_name": "Bob Builder"}],
        "limited": False,
    }
    assert [r["user_id"] for r in (await search("carol"))["results"]] == [carol.user_id]
    assert (await search("dave"))["results"] == []
    body = await search("o", limit=1)
    assert len(body["results"]) == 1 and body["limited"] is True
    status, body = await server.request(
        "POST", f"{V3}/user_directory/search", token=alice.access_token, json={}
    )
    assert status == 400 and body["errcode"] == "M_MISSING_PARAM"


async def _found(server, searcher, term: str) -> list[str]:
    status, body = await server.request(
        "POST",
        f"{V3}/user_directory/search",
        token=searcher.access_token,
        json={"search_term": term},
    )
    assert status == 200, body
    return [r["user_id"] for r in body["results"]]


async def _set_state(server, client, room_id: str, event_type: str, content: dict) -> None:
    status, body = await server.request(
        "PUT",
        f"{V3}/rooms/{room_id}/state/{event_type}/",
        token=client.access_token,
        json=content,
    )
    assert status == 200, body


async def test_user_directory_follows_room_publicness(server):
    """A private room's members are found only by those sharing it (not by themselves);
    a public join rule or world-readable history makes them findable by everyone, and
    going back hides them again."""
    alice = await server.client("alice")
    erin = await server.client("erin")
    stranger = await server.client("stranger")
    await erin.set_displayname("Erin Unique")
    room_id = await _room(alice, invite=[erin.user_id])
    assert isinstance(await erin.join(room_id), JoinResponse)

    assert await _found(server, alice, "unique") == [erin.user_id]
    assert await _found(server, erin, "unique") == []
    assert await _found(server, stranger, "unique") == []

    for event_type, public, private in (
        ("m.room.join_rules", {"join_rule": "public"}, {"join_rule": "invite"}),
        (
            "m.room.history_visibility",
            {"history_visibility": "world_readable"},
            {"history_visibility": "shared"},
        ),
    ):
        await _set_state(server, alice, room_id, event_type, public)
        assert await _found(server, stranger, "unique") == [erin.user_id]
        assert await _found(server, erin, "unique") == [erin.user_id]
        await _set_state(server, alice, room_id, event_type, private)
        assert await _found(server, stranger, "unique") == []


async def test_canonical_alias_must_name_the_rooms_aliases(server):
    alice = await server.client()
    token = alice.access_token
    room_id = (await alice.room_create(alias="canon")).room_id
    other_room = (await alice.room_create(alias="elsewhere")).room_id
    assert other_room != room_id
    good = f"#canon:{server.server_name}"
    path = f"/_matrix/client/v3/rooms/{room_id}/state/m.room.canonical_alias"
    status, _ = await server.request(
        "PUT", path, token=token, json={"alias": good, "alt_aliases": [good]}
    )
    assert status == 200
    cases = [
        ({"alias": f"#missing:{server.server_name}"}, "M_BAD_ALIAS"),
        ({"alias": good, "alt_aliases": [f"#elsewhere:{server.server_name}"]}, "M_BAD_ALIAS"),
        ({"alias": good, "alt_aliases": [f"%canon:{server.server_name}"]}, "M_INVALID_PARAM"),
        ({"alias": "not an alias"}, "M_INVALID_PARAM"),
    ]
    for content, errcode in cases:
        status, body = await server.request("PUT", path, token=token, json=content)
        assert status == 400 and body["errcode"] == errcode, content
    ev = await server.hs.events.current_state_event(room_id, "m.room.canonical_alias")
    assert ev.content == {"alias": good, "alt_aliases": [good]}

    # Deleting the alias takes it out of the event.
    status, _ = await server.request(
        "DELETE", f"/_matrix/client/v3/directory/room/{quote(good)}", token=token
    )
    assert status == 200
    ev = await server.hs.events.current_state_event(room_id, "m.room.canonical_alias")
    assert "alias" not in ev.content and ev.content.get("alt_aliases") == []
