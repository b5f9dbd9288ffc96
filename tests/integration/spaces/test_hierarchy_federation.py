"""The hierarchy across two servers of ours: hs1's user walks a space whose sub-space and
rooms live on hs2 (hs1 asks GET /_matrix/federation/v1/hierarchy), and hs2 answering a
signed request directly."""

from __future__ import annotations

from urllib.parse import quote

from tests.integration.federation.helpers import signed_request
from tests.integration.spaces.helpers import hierarchy, join_rule, link, make_room, names
from tests.schema import assert_matches_schema

FED_PATH = "/_matrix/federation/v1/hierarchy/{}"


async def _remote_space(hs2):
    """On hs2: space S2 (public) -> R2 (public, suggested), P2 (invite only), K2 (space,
    public) -> R3 (public)."""
    bob = await hs2.client("bob")
    here = [hs2.server_name]
    s2 = await make_room(bob, "S2", join_rule("public"), space=True)
    r2 = await make_room(bob, "R2", join_rule("public"))
    p2 = await make_room(bob, "P2")
    k2 = await make_room(bob, "K2", join_rule("public"), space=True)
    r3 = await make_room(bob, "R3", join_rule("public"))
    await link(bob, s2, r2, here, order="1", suggested=True)
    await link(bob, s2, p2, here, order="2")
    await link(bob, s2, k2, here, order="3")
    await link(bob, k2, r3, here)
    return bob, {"S2": s2, "R2": r2, "P2": p2, "K2": k2, "R3": r3}


async def test_walk_reaches_into_another_server(pair):
    hs1, hs2 = pair
    _, remote = await _remote_space(hs2)
    alice = await hs1.client("alice")
    s = await make_room(alice, "S", join_rule("public"), space=True)
    r1 = await make_room(alice, "R1", join_rule("public"))
    await link(alice, s, r1, [hs1.server_name], order="a")
    await link(alice, s, remote["S2"], [hs2.server_name], order="b", suggested=True)

    status, body = await hierarchy(hs1, alice.access_token, s)
    assert status == 200, body
    # S2 and K2 are asked of hs2 (spaces: their children matter); R2 and R3 come from the
    # summaries of their parents' answers; P2 is not for hs1's users.
    assert names(body) == ["S", "R1", "S2", "R2", "K2", "R3"]
    s2 = body["rooms"][2]
    assert s2["room_id"] == remote["S2"] and s2["room_type"] == "m.space"
    assert [c["state_key"] for c in s2["children_state"]] == [remote["R2"], remote["K2"]]

    status, body = await hierarchy(hs1, alice.access_token, s, suggested_only=True)
    assert status == 200 and names(body) == ["S", "S2", "R2"]

    status, body = await hierarchy(hs1, alice.access_token, s, limit=3)
    assert names(body) == ["S", "R1", "S2"]
    status, body = await hierarchy(hs1, alice.access_token, s, **{"from": body["next_batch"]})
    assert status == 200 and names(body) == ["R2", "K2", "R3"]


async def test_serving_another_server(pair, ca):
    hs1, hs2 = pair
    _, remote = await _remote_space(hs2)
    status, body = await signed_request(
        hs1, hs2, ca, "GET", FED_PATH.format(quote(remote["S2"], safe=""))
    )
    assert status == 200, body
    assert_matches_schema(
        "server-server/space_hierarchy.yaml", "/hierarchy/{roomId}", "get", 200, body
    )
    assert body["room"]["room_id"] == remote["S2"]
    assert sorted(c["name"] for c in body["children"]) == ["K2", "R2"]
    assert body["inaccessible_children"] == [remote["P2"]]

    status, body = await signed_request(
        hs1, hs2, ca, "GET", FED_PATH.format(quote(remote["S2"], safe="")) + "?suggested_only=true"
    )
    assert status == 200 and [c["name"] for c in body["children"]] == ["R2"]
    assert body["inaccessible_children"] == []

    # A room hs1 has no part in and may not see, and a room hs2 does not know.
    for room_id in (remote["P2"], f"!unknown:{hs2.server_name}"):
        status, body = await signed_request(
            hs1, hs2, ca, "GET", FED_PATH.format(quote(room_id, safe=""))
        )
        assert (status, body["errcode"]) == (404, "M_NOT_FOUND"), body
    status, body = await signed_request(
        hs1, hs2, ca, "GET", FED_PATH.format(quote(remote["S2"], safe="")) + "?suggested_only=x"
    )
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
