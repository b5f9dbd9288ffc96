"""A room upgraded on another server: when this server first joins the replacement room,
its own aliases of the old room and the old room's place in its directory move along (as
Synapse does; SyTest 30rooms/60version_upgrade "moves remote aliases", "remove a room from
their public directory"), but only for a replacement the old room's tombstone names."""

from __future__ import annotations

from urllib.parse import quote

from nio import JoinResponse, RoomPreset, RoomVisibility

from tests.integration.federation.helpers import eventually

V3 = "/_matrix/client/v3"


async def _alias_room(server, token: str, alias: str) -> str:
    status, body = await server.request("GET", f"{V3}/directory/room/{quote(alias)}", token=token)
    assert status == 200, body
    return body["room_id"]


async def _visibility(server, room_id: str) -> str:
    status, body = await server.request("GET", f"{V3}/directory/list/room/{quote(room_id)}")
    assert status == 200, body
    return body["visibility"]


def _admins(*clients) -> dict:
    # Bob publishes the room in his server's directory: that takes a room admin.
    return {"users": {c.user_id: 100 for c in clients}}


async def _bob_lists_and_aliases(hs2, bob, room_id: str, alias: str) -> None:
    status, body = await hs2.request(
        "PUT",
        f"{V3}/directory/room/{quote(alias)}",
        token=bob.access_token,
        json={"room_id": room_id},
    )
    assert status == 200, body
    status, body = await hs2.request(
        "PUT",
        f"{V3}/directory/list/room/{quote(room_id)}",
        token=bob.access_token,
        json={"visibility": "public"},
    )
    assert status == 200, body


async def test_joining_a_remote_upgrade_moves_our_aliases_and_listing(pair):
    hs1, hs2 = pair
    alice = await hs1.client("alice")
    bob = await hs2.client("bob")
    old = (
        await alice.room_create(
            visibility=RoomVisibility.public,
            preset=RoomPreset.public_chat,
            room_version="10",
            power_level_override=_admins(alice, bob),
        )
    ).room_id
    assert isinstance(await bob.join(old), JoinResponse)
    alias = f"#bobs:{hs2.server_name}"
    await _bob_lists_and_aliases(hs2, bob, old, alias)

    status, body = await hs1.request(
        "POST",
        f"{V3}/rooms/{quote(old)}/upgrade",
        token=alice.access_token,
        json={"new_version": "10"},
    )
    assert status == 200, body
    new = body["replacement_room"]

    async def tombstoned():
        return await hs2.hs.events.current_state_event(old, "m.room.tombstone")

    await eventually(tombstoned)
    assert await _alias_room(hs2, bob.access_token, alias) == old
    status, body = await hs2.request(
        "POST", f"{V3}/join/{quote(new)}?via={hs1.server_name}", token=bob.access_token, json={}
    )
    assert status == 200, body
    assert await _alias_room(hs2, bob.access_token, alias) == new
    assert await _visibility(hs2, new) == "public"
    assert await _visibility(hs2, old) == "private"


async def test_a_predecessor_without_a_tombstone_takes_nothing(pair):
    hs1, hs2 = pair
    alice = await hs1.client("alice")
    bob = await hs2.client("bob")
    old = (
        await alice.room_create(
            preset=RoomPreset.public_chat,
            room_version="10",
            power_level_override=_admins(alice, bob),
        )
    ).room_id
    assert isinstance(await bob.join(old), JoinResponse)
    alias = f"#kept:{hs2.server_name}"
    await _bob_lists_and_aliases(hs2, bob, old, alias)
    # A room that names `old` as its predecessor, which `old` does not acknowledge.
    claimant = (
        await alice.room_create(
            preset=RoomPreset.public_chat, room_version="10", predecessor={"room_id": old}
        )
    ).room_id
    status, body = await hs2.request(
        "POST",
        f"{V3}/join/{quote(claimant)}?via={hs1.server_name}",
        token=bob.access_token,
        json={},
    )
    assert status == 200, body
    assert await _alias_room(hs2, bob.access_token, alias) == old
    assert await _visibility(hs2, old) == "public"
    assert await _visibility(hs2, claimant) == "private"


async def test_a_room_joined_through_another_server_can_be_published_here(pair):
    """Its state is outliers on this server until it changes: the directory reads the
    publisher's power and the room's name from them too."""
    hs1, hs2 = pair
    alice = await hs1.client("alice")
    bob = await hs2.client("bob")
    room = (
        await alice.room_create(
            name="Lobby",
            preset=RoomPreset.public_chat,
            room_version="10",
            power_level_override=_admins(alice, bob),
        )
    ).room_id
    status, body = await hs2.request(
        "POST", f"{V3}/join/{quote(room)}?via={hs1.server_name}", token=bob.access_token, json={}
    )
    assert status == 200, body
    await _bob_lists_and_aliases(hs2, bob, room, f"#lobby:{hs2.server_name}")
    status, body = await hs2.request("GET", f"{V3}/publicRooms")
    assert status == 200, body
    [entry] = [r for r in body["chunk"] if r["room_id"] == room]
    assert entry["name"] == "Lobby"
