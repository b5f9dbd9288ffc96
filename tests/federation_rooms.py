"""Rooms shared by two test servers, before the join endpoints exist.

`remote_join` does what a send_join does for both sides: the resident server receives
the joining user's join as a PDU (through the real inbound pipeline), and the joining
server stores the room's state and auth chain as outliers, then the join on top of it.
`deliver` hands events one server stored to another's inbound pipeline, as /send would.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from federation.state import auth_chain_ids
from homeserver.events.auth import auth_types_for_event
from homeserver.events.hashing import compute_event_id
from homeserver.events.signing import hash_and_sign_event


async def make_event(
    head_of,
    signer,
    room_id: str,
    sender: str,
    event_type: str,
    content: dict[str, Any],
    state_key: str | None = None,
    *,
    prev: list[str] | None = None,
    state: dict | None = None,
    depth: int | None = None,
    ts: int | None = None,
) -> tuple[str, dict[str, Any]]:
    """An event built on `head_of`'s view of the room (its extremities, depth and
    current state, unless given) and signed with `signer`'s key."""
    head = await head_of.hs.events.room_head(room_id)
    version = head.version
    state = head.state if state is None else state
    event: dict[str, Any] = {
        "room_id": room_id,
        "type": event_type,
        "sender": sender,
        "content": content,
        "origin_server_ts": ts if ts is not None else int(time.time() * 1000),
        "depth": depth if depth is not None else head.depth + 1,
        "prev_events": list(head.extremities if prev is None else prev),
    }
    if state_key is not None:
        event["state_key"] = state_key
    event["auth_events"] = [state[k] for k in auth_types_for_event(version, event) if k in state]
    if version.event_ids_carry_domain:  # v1/v2: [id, hashes] references and a named id
        event["prev_events"] = [[e, {}] for e in event["prev_events"]]
        event["auth_events"] = [[e, {}] for e in event["auth_events"]]
        event["event_id"] = f"${secrets.token_urlsafe(12)}:{signer.server_name}"
        event["origin"] = signer.server_name
    event = hash_and_sign_event(event, signer.server_name, signer.hs.signing_key, version)
    event_id = event["event_id"] if version.event_ids_carry_domain else None
    return event_id or compute_event_id(event, version), event


async def pdus(server, event_ids: list[str]) -> list[dict[str, Any]]:
    stored = await server.hs.event_store.get_events(event_ids)
    return [stored[e].event for e in event_ids]


async def deliver(src, dst, event_ids: list[str]) -> dict[str, dict]:
    """`dst` receives `src`'s events as PDUs from `src`."""
    return await dst.hs.federation.inbound.handle_pdus(src.server_name, await pdus(src, event_ids))


async def remote_join(resident, joiner, room_id: str, user_id: str) -> str:
    """`user_id` (on `joiner`) joins `resident`'s room; returns the join event id."""
    head = await resident.hs.events.room_head(room_id)
    state_before = dict(head.state)
    join_id, join = await make_event(
        resident, joiner, room_id, user_id, "m.room.member", {"membership": "join"}, user_id
    )
    result = await resident.hs.federation.inbound.handle_pdus(joiner.server_name, [join])
    assert result == {join_id: {}}, result

    create = await resident.hs.event_store.get_event(state_before[("m.room.create", "")])
    await joiner.hs.events.create_federated_room(
        room_id, head.version.identifier, create.event["sender"]
    )
    ids = set(state_before.values()) | await auth_chain_ids(resident.hs, state_before.values())
    known = await resident.hs.event_store.get_events(ids)
    await joiner.hs.events.persist_outliers(room_id, [(i, e.event) for i, e in known.items()])
    await joiner.hs.events.persist_federated(room_id, join, join_id, state_before=state_before)
    return join_id


class SharedRoom:
    """Alice on hs1 made the room; Bob on hs2 joined it; hs3 is admitted by both servers
    but has nobody in the room."""

    def __init__(self, hs1, hs2, hs3, alice, bob, room_id):
        self.hs1, self.hs2, self.hs3 = hs1, hs2, hs3
        self.alice, self.bob, self.room_id = alice, bob, room_id

    async def state(self, server) -> dict:
        return await server.hs.event_store.current_state_ids(self.room_id)

    async def extremities(self, server) -> list[str]:
        return sorted((await server.hs.events.room_head(self.room_id)).extremities)

    async def status(self, server, event_id: str) -> str:
        stored = await server.hs.event_store.get_event(event_id)
        return "missing" if stored is None else (stored.status or "timeline")

    async def say(self, client, body: str) -> str:
        return await self.say_in(client, self.room_id, body)

    async def say_in(self, client, room_id: str, body: str) -> str:
        resp = await client.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": body}
        )
        return resp.event_id

    async def bob_says(self, body: str) -> str:
        return await self.say(self.bob, body)

    async def bad_event(self, *args, **kw) -> tuple[str, dict]:
        """An event from hs2 built on hs1's view of the room."""
        return await make_event(self.hs1, self.hs2, self.room_id, *args, **kw)


async def shared_room(
    make_server,
    ca,
    *,
    initial_state: list | None = None,
    before_join=None,
    outbound=False,
    room_version: str | None = None,
) -> SharedRoom:
    """`before_join(room)` runs after the room is made and before Bob joins; the room is
    of `room_version` (else the default).

    Without `outbound`, the servers' outbound queues are stopped, so that an event reaches
    another server only when a test delivers it (and in the order it chooses)."""
    from tests.federation_ca import start_federating_server

    servers = [
        await start_federating_server(make_server, ca, f"hs{i}.test.local", ["*.test.local"])
        for i in (1, 2, 3)
    ]
    if not outbound:
        for server in servers:
            await server.hs.federation.sender.stop()
    alice = await servers[0].client("alice")
    resp = await alice.room_create(
        name="Shared", initial_state=initial_state or [], room_version=room_version
    )
    room_id = resp.room_id
    await alice.room_put_state(room_id, "m.room.join_rules", {"join_rule": "public"})
    bob = await servers[1].client("bob")
    room = SharedRoom(*servers, alice, bob, room_id)
    if before_join is not None:
        await before_join(room)
    await remote_join(servers[0], servers[1], room_id, bob.user_id)
    return room
