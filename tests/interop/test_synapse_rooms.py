"""Rooms shared between our server and Synapse: created on each side and joined from the
other, messages both ways, history from before the join, invites, leaving."""

from __future__ import annotations

from urllib.parse import quote

from nio import JoinResponse, RoomCreateResponse

from tests.interop.helpers import (
    history,
    public_room,
    send_text,
    sync_until,
    wait_for_invite,
    wait_for_texts,
)


async def test_room_on_synapse_joined_from_ours(ours, synapse_peer):
    bob = await synapse_peer.client()
    alice = await ours.client("alice")
    try:
        room_id, alias = await public_room(bob, "hall")
        await send_text(bob, room_id, "before 1")
        await send_text(bob, room_id, "before 2")

        joined = await alice.join(alias)
        assert isinstance(joined, JoinResponse), joined
        assert joined.room_id == room_id
        await alice.sync(timeout=0)
        assert alice.rooms[room_id].name == "hall"  # state from the join
        assert set(alice.rooms[room_id].users) == {alice.user_id, bob.user_id}
        assert await history(alice, room_id) == ["before 1", "before 2"]

        await bob.sync(timeout=0)
        await send_text(alice, room_id, "hello from ours")
        assert "hello from ours" in await wait_for_texts(bob, room_id, ["hello from ours"])
        await send_text(bob, room_id, "hello from synapse")
        assert "hello from synapse" in await wait_for_texts(alice, room_id, ["hello from synapse"])
    finally:
        await bob.close()


async def test_room_on_ours_joined_from_synapse(ours, synapse_peer):
    alice = await ours.client("alice")
    bob = await synapse_peer.client()
    try:
        room_id, alias = await public_room(alice, "lobby")
        await send_text(alice, room_id, "before 1")
        await send_text(alice, room_id, "before 2")

        joined = await bob.join(alias)
        assert isinstance(joined, JoinResponse), joined
        assert joined.room_id == room_id
        await bob.sync(timeout=0)
        assert set(bob.rooms[room_id].users) == {alice.user_id, bob.user_id}
        assert await history(bob, room_id) == ["before 1", "before 2"]

        await alice.sync(timeout=0)
        await send_text(bob, room_id, "hello from synapse")
        assert "hello from synapse" in await wait_for_texts(alice, room_id, ["hello from synapse"])
        await send_text(alice, room_id, "hello from ours")
        assert "hello from ours" in await wait_for_texts(bob, room_id, ["hello from ours"])
    finally:
        await bob.close()


async def test_join_by_room_id_with_via(ours, synapse_peer):
    """Room version 12 IDs name no server: the joining side is told where to go
    (`via`, or its older spelling `server_name` as some clients still send)."""
    alice = await ours.client("alice")
    bob = await synapse_peer.client()
    http = await synapse_peer.http()
    try:
        syn_room, _ = await public_room(bob, "via-syn")
        status, body = await ours.request(
            "POST",
            f"/_matrix/client/v3/join/{quote(syn_room)}?via={quote(synapse_peer.server_name)}",
            token=alice.access_token,
            json={},
        )
        assert (status, body.get("room_id")) == (200, syn_room), body

        our_room, _ = await public_room(alice, "via-ours")
        async with http.post(
            f"{synapse_peer.client_url}/_matrix/client/v3/join/{quote(our_room)}"
            f"?server_name={quote(ours.server_name)}",
            json={},
            headers={"Authorization": f"Bearer {bob.access_token}"},
        ) as resp:
            assert resp.status == 200, await resp.text()
        await send_text(bob, our_room, "joined by id")
        assert "joined by id" in await wait_for_texts(alice, our_room, ["joined by id"])
    finally:
        await bob.close()


async def test_invites_both_ways(ours, synapse_peer):
    alice = await ours.client("alice")
    bob = await synapse_peer.client()
    try:
        await bob.sync(timeout=0)
        await alice.sync(timeout=0)
        created = await alice.room_create(name="ours private", invite=[bob.user_id])
        assert isinstance(created, RoomCreateResponse), created
        await wait_for_invite(bob, created.room_id)
        assert isinstance(await bob.join(created.room_id), JoinResponse)
        await send_text(bob, created.room_id, "thanks alice")
        assert "thanks alice" in await wait_for_texts(alice, created.room_id, ["thanks alice"])

        created = await bob.room_create(name="synapse private", invite=[alice.user_id])
        assert isinstance(created, RoomCreateResponse), created
        await wait_for_invite(alice, created.room_id)
        assert isinstance(await alice.join(created.room_id), JoinResponse)
        await send_text(alice, created.room_id, "thanks bob")
        assert "thanks bob" in await wait_for_texts(bob, created.room_id, ["thanks bob"])
    finally:
        await bob.close()


async def test_leave_is_seen_on_the_other_side(ours, synapse_peer):
    alice = await ours.client("alice")
    bob = await synapse_peer.client()
    try:
        room_id, alias = await public_room(alice, "exit")
        assert isinstance(await bob.join(alias), JoinResponse)
        await bob.room_leave(room_id)
        await sync_until(
            alice, lambda _: bob.user_id not in alice.rooms[room_id].users, "bob's leave"
        )
        assert set(alice.rooms[room_id].users) == {alice.user_id}
    finally:
        await bob.close()
