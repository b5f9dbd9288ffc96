"""Rooms shared between our server and Synapse: created on each side and joined from the
other, messages both ways, history from before the join, invites, leaving.

Every wait is a bounded number of /sync long-polls; a message that never arrives fails the
test after that bound instead of hanging it.
"""

from __future__ import annotations

import uuid
from urllib.parse import quote

from nio import (
    AsyncClient,
    InviteMemberEvent,
    JoinResponse,
    RoomCreateResponse,
    RoomMessagesResponse,
    RoomMessageText,
    RoomSendResponse,
    RoomVisibility,
    SyncResponse,
)

MAX_SYNCS = 40
SYNC_TIMEOUT_MS = 3_000


async def send_text(client: AsyncClient, room_id: str, body: str) -> str:
    resp = await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})
    assert isinstance(resp, RoomSendResponse), resp
    return resp.event_id


async def wait_for_texts(client: AsyncClient, room_id: str, wanted: list[str]) -> list[str]:
    """Syncs until every body in `wanted` has arrived in `room_id`'s timeline; returns the
    bodies seen, in order. Bounded: MAX_SYNCS long-polls."""
    seen: list[str] = []
    for _ in range(MAX_SYNCS):
        resp = await client.sync(timeout=SYNC_TIMEOUT_MS, since=client.next_batch)
        assert isinstance(resp, SyncResponse), resp
        room = resp.rooms.join.get(room_id)
        if room is not None:
            seen += [e.body for e in room.timeline.events if isinstance(e, RoomMessageText)]
        if all(body in seen for body in wanted):
            return seen
    raise AssertionError(f"{client.user_id} saw {seen}, still waiting for {wanted}")


async def wait_for_invite(client: AsyncClient, room_id: str) -> None:
    for _ in range(MAX_SYNCS):
        resp = await client.sync(timeout=SYNC_TIMEOUT_MS, since=client.next_batch)
        assert isinstance(resp, SyncResponse), resp
        invited = resp.rooms.invite.get(room_id)
        if invited is not None:
            members = [e for e in invited.invite_state if isinstance(e, InviteMemberEvent)]
            assert any(e.state_key == client.user_id for e in members), members
            return
    raise AssertionError(f"{client.user_id} never saw the invite to {room_id}")


async def history(client: AsyncClient, room_id: str) -> list[str]:
    """Every text message in the room, oldest first, by paginating /messages backwards from
    the latest sync (bounded)."""
    resp = await client.sync(timeout=0, since=client.next_batch)
    assert isinstance(resp, SyncResponse), resp
    timeline = resp.rooms.join[room_id].timeline if room_id in resp.rooms.join else None
    token = timeline.prev_batch if timeline is not None else client.next_batch
    bodies: list[str] = []
    if timeline is not None:
        bodies = [e.body for e in timeline.events if isinstance(e, RoomMessageText)]
    for _ in range(20):
        page = await client.room_messages(room_id, token, limit=50)
        assert isinstance(page, RoomMessagesResponse), page
        bodies[:0] = [e.body for e in reversed(page.chunk) if isinstance(e, RoomMessageText)]
        if not page.chunk or page.end is None:
            return bodies
        token = page.end
    raise AssertionError("history longer than 20 pages")


async def public_room(client: AsyncClient, name: str) -> tuple[str, str]:
    """A public room with an alias made unique (one Synapse serves the whole session):
    (room ID, alias)."""
    localpart = f"{name}{uuid.uuid4().hex[:6]}"
    created = await client.room_create(visibility=RoomVisibility.public, alias=localpart, name=name)
    assert isinstance(created, RoomCreateResponse), created
    server = client.user_id.split(":", 1)[1]
    return created.room_id, f"#{localpart}:{server}"


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
        for _ in range(MAX_SYNCS):
            await alice.sync(timeout=SYNC_TIMEOUT_MS, since=alice.next_batch)
            if bob.user_id not in alice.rooms[room_id].users:
                break
        assert set(alice.rooms[room_id].users) == {alice.user_id}
    finally:
        await bob.close()
