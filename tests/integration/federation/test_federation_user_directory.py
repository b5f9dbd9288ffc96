"""The user directory forgets the members of a remote room once this server has left it
(its copy of the room's state no longer changes)."""

from __future__ import annotations

from nio import JoinResponse, RoomCreateResponse, RoomLeaveResponse, RoomPreset

from tests.integration.federation.helpers import eventually


async def test_remote_public_room_members_go_when_the_server_leaves(pair):
    hs1, hs2 = pair
    alice = await hs1.client("alice")
    await alice.set_displayname("Alice Faraway")
    bob = await hs2.client("bob")
    created = await alice.room_create(
        preset=RoomPreset.public_chat,
        initial_state=[
            {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "public"}}
        ],
        invite=[bob.user_id],
    )
    assert isinstance(created, RoomCreateResponse), created
    await eventually(lambda: _invited(hs2, bob.user_id, created.room_id))
    assert isinstance(await bob.join(created.room_id), JoinResponse)

    async def bob_finds_alice() -> bool:
        status, body = await hs2.request(
            "POST",
            "/_matrix/client/v3/user_directory/search",
            token=bob.access_token,
            json={"search_term": "faraway"},
        )
        assert status == 200, body
        return [r["user_id"] for r in body["results"]] == [alice.user_id]

    assert await bob_finds_alice()
    assert isinstance(await bob.room_leave(created.room_id), RoomLeaveResponse)
    assert not await bob_finds_alice()


async def _invited(server, user_id: str, room_id: str) -> bool:
    return (await server.hs.out_of_band.get(user_id, room_id)) is not None
