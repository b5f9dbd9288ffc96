"""GET /_matrix/client/v1/rooms/{roomId}/hierarchy on one server: order, visibility,
depth, suggested rooms, pagination tokens, and bad input."""

from __future__ import annotations

from nio import JoinResponse, SpaceGetHierarchyResponse

from tests.integration.spaces.helpers import (
    WORLD_READABLE,
    hierarchy,
    join_rule,
    link,
    make_room,
    names,
)


async def _tree(server):
    """Space S (public) -> C (space, order "a", suggested) -> D (world readable), S (a loop);
    S -> A (public, order "b"), B (invite only), E (restricted to members of A), F (a void
    link: no via)."""
    alice = await server.client("alice")
    here = [server.server_name]
    s = await make_room(alice, "S", join_rule("public"), space=True)
    c = await make_room(alice, "C", join_rule("public"), space=True)
    d = await make_room(alice, "D", WORLD_READABLE)
    a = await make_room(alice, "A", join_rule("public"))
    b = await make_room(alice, "B")
    allow = [{"type": "m.room_membership", "room_id": a}]
    e = await make_room(alice, "E", join_rule("restricted", allow=allow))
    f = await make_room(alice, "F", join_rule("public"))
    await link(alice, s, a, here, order="b")
    await link(alice, s, b, here)
    await link(alice, s, e, here)
    await link(alice, s, c, here, order="a", suggested=True)
    await link(alice, c, d, here)
    await link(alice, c, s, here)
    await link(alice, s, f, [])
    return alice, {"S": s, "C": c, "D": d, "A": a, "B": b, "E": e, "F": f}


async def test_walk_order_visibility_and_depth(server):
    alice, rooms = await _tree(server)
    status, body = await hierarchy(server, alice.access_token, rooms["S"])
    assert status == 200, body
    # Depth first, children in the spec's order (valid `order` first); S met again via C
    # is not repeated; F's link is void. Alice is in every room.
    assert names(body) == ["S", "C", "D", "A", "B", "E"]
    assert "next_batch" not in body
    space = body["rooms"][0]
    assert space["room_type"] == "m.space" and space["join_rule"] == "public"
    assert [c["state_key"] for c in space["children_state"]] == [
        rooms["C"],
        rooms["A"],
        rooms["B"],
        rooms["E"],
    ]
    restricted = next(r for r in body["rooms"] if r["name"] == "E")
    assert restricted["allowed_room_ids"] == [rooms["A"]]
    assert restricted["room_version"] and restricted["num_joined_members"] == 1

    # Bob is in nothing: he sees the public and world-readable rooms, not B, and E only
    # once he meets its condition (membership of A).
    bob = await server.client("bob")
    status, body = await hierarchy(server, bob.access_token, rooms["S"])
    assert status == 200 and names(body) == ["S", "C", "D", "A"]
    assert isinstance(await bob.join(rooms["A"]), JoinResponse)
    resp = await bob.space_get_hierarchy(rooms["S"])
    assert isinstance(resp, SpaceGetHierarchyResponse), resp
    assert [r["name"] for r in resp.rooms] == ["S", "C", "D", "A", "E"]

    status, body = await hierarchy(server, bob.access_token, rooms["S"], max_depth=0)
    assert status == 200 and names(body) == ["S"]
    status, body = await hierarchy(server, bob.access_token, rooms["S"], max_depth=1)
    assert status == 200 and names(body) == ["S", "C", "A", "E"]
    status, body = await hierarchy(server, bob.access_token, rooms["S"], suggested_only=True)
    assert status == 200 and names(body) == ["S", "C"]
    assert [c["state_key"] for c in body["rooms"][0]["children_state"]] == [rooms["C"]]


async def test_pagination_tokens(server):
    alice, rooms = await _tree(server)
    token = alice.access_token
    seen: list[str] = []
    status, body = await hierarchy(server, token, rooms["S"], limit=2)
    assert status == 200 and names(body) == ["S", "C"] and body["next_batch"]
    first = body["next_batch"]
    seen += names(body)
    next_batch: str | None = first
    while next_batch:
        status, body = await hierarchy(server, token, rooms["S"], limit=2, **{"from": next_batch})
        assert status == 200, body
        seen += names(body)
        next_batch = body.get("next_batch")
    assert seen == ["S", "C", "D", "A", "B", "E"]

    # A token answers only the query it came from.
    for params in ({"suggested_only": True}, {"max_depth": 3}):
        status, body = await hierarchy(server, token, rooms["S"], **{"from": first}, **params)
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await hierarchy(server, token, rooms["C"], **{"from": first})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    bob = await server.client("bob")
    status, body = await hierarchy(server, bob.access_token, rooms["S"], **{"from": first})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    status, body = await hierarchy(server, token, rooms["S"], **{"from": "nonsense"})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    # The token still works for its own query.
    status, body = await hierarchy(server, token, rooms["S"], limit=2, **{"from": first})
    assert status == 200 and names(body) == ["D", "A"]


async def test_rooms_the_user_cannot_see(server):
    alice, rooms = await _tree(server)
    bob = await server.client("bob")
    before = await server.db.fetchval("SELECT count(*) FROM space_hierarchy_sessions")
    # An invite-only room bob is not in, a room that does not exist, not a room ID.
    for room_id in (rooms["B"], "!nope:" + server.server_name):
        status, body = await hierarchy(server, bob.access_token, room_id, limit=1)
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body
    status, body = await hierarchy(server, bob.access_token, "#alias:test.local")
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    # A banned user sees not even a public space, nor the next page of a walk begun before.
    assert await server.db.fetchval("SELECT count(*) FROM space_hierarchy_sessions") == before
    status, body = await hierarchy(server, bob.access_token, rooms["S"], limit=1)
    assert status == 200 and body["next_batch"]
    token = body["next_batch"]
    await alice.room_ban(rooms["S"], bob.user_id)
    status, body = await hierarchy(server, bob.access_token, rooms["S"])
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await hierarchy(server, bob.access_token, rooms["S"], limit=1, **{"from": token})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    before = await server.db.fetchval("SELECT count(*) FROM space_hierarchy_sessions")
    for params in ({"limit": 0}, {"limit": "x"}, {"max_depth": -1}, {"suggested_only": "yes"}):
        status, body = await hierarchy(server, alice.access_token, rooms["S"], **params)
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM"), params
    assert await server.db.fetchval("SELECT count(*) FROM space_hierarchy_sessions") == before
    status, body = await server.request("GET", f"/_matrix/client/v1/rooms/{rooms['S']}/hierarchy")
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")
