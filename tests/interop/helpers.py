"""What the interop tests share: matrix-nio steps whose waits are bounded /sync long-polls
(a message that never arrives fails the test after that bound instead of hanging it)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from urllib.parse import quote, urlencode

import aiohttp
from nio import (
    AsyncClient,
    InviteMemberEvent,
    RoomCreateResponse,
    RoomMessagesResponse,
    RoomMessageText,
    RoomSendResponse,
    RoomVisibility,
    SyncResponse,
)

MAX_SYNCS = 40
SYNC_TIMEOUT_MS = 3_000
# Enough timeline per sync that a burst of messages never comes back "limited" (with a gap).
TIMELINE = {"room": {"timeline": {"limit": 100}}}


async def send_text(client: AsyncClient, room_id: str, body: str) -> str:
    resp = await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})
    assert isinstance(resp, RoomSendResponse), resp
    return resp.event_id


async def sync_until(
    client: AsyncClient, done: Callable[[SyncResponse], bool], what: str
) -> SyncResponse:
    """Incremental syncs until `done(response)` holds; bounded: MAX_SYNCS long-polls."""
    for _ in range(MAX_SYNCS):
        resp = await client.sync(timeout=SYNC_TIMEOUT_MS, since=client.next_batch)
        assert isinstance(resp, SyncResponse), resp
        if done(resp):
            return resp
    raise AssertionError(f"{client.user_id}: still waiting for {what}")


async def wait_for_texts(client: AsyncClient, room_id: str, wanted: list[str]) -> list[str]:
    """Syncs until every body in `wanted` has arrived in `room_id`'s timeline; returns the
    bodies seen, in order. Bounded: MAX_SYNCS long-polls."""
    seen: list[str] = []
    for _ in range(MAX_SYNCS):
        resp = await client.sync(
            timeout=SYNC_TIMEOUT_MS, since=client.next_batch, sync_filter=TIMELINE
        )
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


async def join_via(client: AsyncClient, room_id: str, server: str) -> tuple[int, dict]:
    """POST /join/{roomId} naming the server to join through (both spellings: `via`, and
    the older `server_name` that Synapse also reads); nio's join() names none."""
    query = urlencode({"via": server, "server_name": server})
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{client.homeserver}/_matrix/client/v3/join/{quote(room_id)}?{query}",
            json={},
            headers={"Authorization": f"Bearer {client.access_token}"},
        ) as resp:
            return resp.status, await resp.json()
