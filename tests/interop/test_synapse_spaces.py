"""The space hierarchy between Synapse and us, over GET /_matrix/federation/v1/hierarchy
in both directions: our user walks into Synapse's spaces, and Synapse's user walks into
ours."""

from __future__ import annotations

from urllib.parse import quote

import aiohttp

from tests.integration.spaces.helpers import hierarchy, join_rule, link, make_room, names
from tests.schema import assert_matches_schema


async def _synapse_hierarchy(client, room_id: str) -> dict:
    """Synapse's client API answer (checked against the same schema as ours)."""
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{client.homeserver}/_matrix/client/v1/rooms/{quote(room_id)}/hierarchy",
            headers={"Authorization": f"Bearer {client.access_token}"},
        ) as resp:
            body = await resp.json()
            assert resp.status == 200, body
    assert_matches_schema("space_hierarchy.yaml", "/rooms/{roomId}/hierarchy", "get", 200, body)
    return body


async def test_our_user_walks_into_a_synapse_space(ours, synapse_peer):
    bob = await synapse_peer.client()
    try:
        there = [synapse_peer.server_name]
        space = await make_room(bob, "Synapse space", join_rule("public"), space=True)
        room = await make_room(bob, "Synapse room", join_rule("public"))
        hidden = await make_room(bob, "Synapse secret")
        await link(bob, space, room, there, order="1")
        await link(bob, space, hidden, there, order="2")
        alice = await ours.client("alice")
        top = await make_room(alice, "Our space", join_rule("public"), space=True)
        await link(alice, top, space, there)
        status, body = await hierarchy(ours, alice.access_token, top)
        assert status == 200, body
        assert names(body) == ["Our space", "Synapse space", "Synapse room"]
    finally:
        await bob.close()


async def test_a_synapse_user_walks_into_our_space(ours, synapse_peer):
    alice = await ours.client("alice")
    here = [ours.server_name]
    space = await make_room(alice, "Our space", join_rule("public"), space=True)
    room = await make_room(alice, "Our room", join_rule("public"))
    secret = await make_room(alice, "Our secret")
    await link(alice, space, room, here, order="1")
    await link(alice, space, secret, here, order="2")
    bob = await synapse_peer.client()
    try:
        top = await make_room(bob, "Synapse space", join_rule("public"), space=True)
        await link(bob, top, space, here)
        body = await _synapse_hierarchy(bob, top)
        assert [r.get("name") for r in body["rooms"]] == ["Synapse space", "Our space", "Our room"]
    finally:
        await bob.close()
