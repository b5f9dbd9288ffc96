"""Rooms shared between our server and Synapse: created on each side and joined from the
other, messages both ways, history from before the join, invites, leaving."""

from __future__ import annotations

import uuid
from urllib.parse import quote

import pytest
from nio import (
    JoinResponse,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomKnockResponse,
    RoomLeaveResponse,
    RoomMemberEvent,
    RoomVisibility,
)

from tests.federation_ca import start_federating_server
from tests.interop.helpers import (
    history,
    join_via,
    public_room,
    send_text,
    sync_until,
    wait_for_invite,
    wait_for_texts,
)
from tests.synapse_peer import OUR_HOST


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


@pytest.mark.parametrize("created_on", ["ours", "synapse"])
async def test_long_history_is_backfilled_page_by_page(ours, synapse_peer, created_on):
    """More history than one backfill request returns: the joining server goes back for
    more as its user pages up, until the room's creation."""
    alice = await ours.client("alice")
    bob = await synapse_peer.client()
    host, guest = (alice, bob) if created_on == "ours" else (bob, alice)
    try:
        room_id, alias = await public_room(host, "archive")
        sent = [f"old {i}" for i in range(150)]
        for body in sent:
            await send_text(host, room_id, body)
        assert isinstance(await guest.join(alias), JoinResponse)
        assert await history(guest, room_id) == sent
    finally:
        await bob.close()


@pytest.mark.parametrize("created_on", ["ours", "synapse"])
async def test_knock_then_invite_across(ours, synapse_peer, created_on):
    alice = await ours.client("alice")
    bob = await synapse_peer.client()
    host, guest = (alice, bob) if created_on == "ours" else (bob, alice)
    try:
        localpart = f"door{uuid.uuid4().hex[:6]}"
        created = await host.room_create(
            alias=localpart,
            initial_state=[
                {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}
            ],
        )
        assert isinstance(created, RoomCreateResponse), created
        room_id = created.room_id
        alias = f"#{localpart}:{host.user_id.split(':', 1)[1]}"
        await host.sync(timeout=0)
        # Not invited: a join is refused, a knock goes through to the host's server.
        refused = await guest.join(alias)
        assert getattr(refused, "status_code", None) == "M_FORBIDDEN", refused
        knocked = await guest.room_knock(alias, reason="let me in")
        assert isinstance(knocked, RoomKnockResponse), knocked
        await sync_until(host, lambda resp: _knocked(resp, room_id) == [guest.user_id], "the knock")
        assert isinstance(await host.room_invite(room_id, guest.user_id), RoomInviteResponse)
        await wait_for_invite(guest, room_id)
        assert isinstance(await guest.join(room_id), JoinResponse)
        await send_text(guest, room_id, "thanks for letting me in")
        await wait_for_texts(host, room_id, ["thanks for letting me in"])
    finally:
        await bob.close()


def _knocked(resp, room_id: str) -> list[str]:
    """Who knocked on `room_id`, from the room's timeline in a sync response."""
    room = resp.rooms.join.get(room_id)
    events = room.timeline.events if room is not None else []
    return [
        e.state_key for e in events if isinstance(e, RoomMemberEvent) and e.membership == "knock"
    ]


@pytest.mark.parametrize("created_on", ["ours", "synapse"])
@pytest.mark.parametrize("version", ["9", "10", "11"])
async def test_older_room_versions(ours, synapse_peer, created_on, version):
    """Rooms of versions before 12 (room IDs naming a server, other redaction and auth
    rules) shared the same way: history, messages both ways, a redaction."""
    alice = await ours.client("alice")
    bob = await synapse_peer.client()
    host, guest = (alice, bob) if created_on == "ours" else (bob, alice)
    try:
        localpart = f"v{version}x{uuid.uuid4().hex[:6]}"
        created = await host.room_create(
            visibility=RoomVisibility.public, alias=localpart, room_version=version
        )
        assert isinstance(created, RoomCreateResponse), created
        room_id = created.room_id
        await send_text(host, room_id, "before the join")
        joined = await guest.join(f"#{localpart}:{host.user_id.split(':', 1)[1]}")
        assert isinstance(joined, JoinResponse), joined
        create = await guest.room_get_state_event(room_id, "m.room.create")
        assert create.content.get("room_version") == version, create
        assert await history(guest, room_id) == ["before the join"]
        await host.sync(timeout=0)
        await send_text(guest, room_id, "guest here")
        await wait_for_texts(host, room_id, ["guest here"])
        regret = await send_text(host, room_id, "host regrets")
        await wait_for_texts(guest, room_id, ["host regrets"])
        assert getattr(await host.room_redact(room_id, regret), "event_id", None)
        await sync_until(
            guest,
            lambda resp: any(
                getattr(e, "redacts", None) == regret
                for e in (
                    resp.rooms.join[room_id].timeline.events if room_id in resp.rooms.join else []
                )
            ),
            "the redaction",
        )
    finally:
        await bob.close()


async def test_invites_declined_both_ways(ours, synapse_peer):
    alice = await ours.client("alice")
    bob = await synapse_peer.client()
    try:
        await alice.sync(timeout=0)
        await bob.sync(timeout=0)
        for host, guest in ((alice, bob), (bob, alice)):
            created = await host.room_create(invite=[guest.user_id])
            assert isinstance(created, RoomCreateResponse), created
            await wait_for_invite(guest, created.room_id)
            declined = await guest.room_leave(created.room_id)
            assert isinstance(declined, RoomLeaveResponse), declined
            await sync_until(
                host,
                lambda resp, room_id=created.room_id, guest=guest: (
                    any(
                        isinstance(e, RoomMemberEvent)
                        and e.state_key == guest.user_id
                        and e.membership == "leave"
                        for e in resp.rooms.join[room_id].timeline.events
                    )
                    if room_id in resp.rooms.join
                    else False
                ),
                "the declined invite",
            )
    finally:
        await bob.close()


async def test_a_second_server_of_ours_joins_through_synapse(make_server, synapse_peer):
    """Three servers: ours (A) hosts a room, Synapse joins it, and another server of ours
    (B) joins through Synapse alone; then everyone hears everyone."""
    sock_a, sock_b = synapse_peer.take_socket(), synapse_peer.take_socket()
    name_a, name_b = (f"{OUR_HOST}:{s.getsockname()[1]}" for s in (sock_a, sock_b))
    server_a = await start_federating_server(
        make_server, synapse_peer.ca, OUR_HOST, [synapse_peer.server_name, name_b], sock=sock_a
    )
    server_b = await start_federating_server(
        make_server, synapse_peer.ca, OUR_HOST, [synapse_peer.server_name, name_a], sock=sock_b
    )
    alice = await server_a.client("alice")
    carol = await server_b.client("carol")
    bob = await synapse_peer.client()
    try:
        room_id, alias = await public_room(alice, "three")
        await send_text(alice, room_id, "before anyone")
        assert isinstance(await bob.join(alias), JoinResponse)
        status, body = await server_b.request(
            "POST",
            f"/_matrix/client/v3/join/{quote(room_id)}?via={quote(synapse_peer.server_name)}",
            token=carol.access_token,
            json={},
        )
        assert (status, body.get("room_id")) == (200, room_id), body
        assert await history(carol, room_id) == ["before anyone"]
        for client in (alice, bob):
            await client.sync(timeout=0)
        await send_text(carol, room_id, "carol via synapse")
        await wait_for_texts(alice, room_id, ["carol via synapse"])
        await wait_for_texts(bob, room_id, ["carol via synapse"])
        await send_text(alice, room_id, "alice to all")
        await wait_for_texts(carol, room_id, ["alice to all"])
    finally:
        await bob.close()


@pytest.mark.parametrize("created_on", ["ours", "synapse"])
async def test_restricted_room_joined_as_a_member_of_another(ours, synapse_peer, created_on):
    """Room version 10 `restricted` joins over federation: the resident server names one of
    its users as the authoriser (join_authorised_via_users_server) and countersigns."""
    alice = await ours.client("alice")
    bob = await synapse_peer.client()
    outsider = await (synapse_peer.client() if created_on == "ours" else ours.client("out"))
    host, guest = (alice, bob) if created_on == "ours" else (bob, alice)
    host_server = host.user_id.split(":", 1)[1]
    try:
        space_id, space_alias = await public_room(host, "space")
        assert isinstance(await guest.join(space_alias), JoinResponse)
        allow = [{"type": "m.room_membership", "room_id": space_id}]
        created = await host.room_create(
            room_version="10",
            initial_state=[
                {
                    "type": "m.room.join_rules",
                    "state_key": "",
                    "content": {"join_rule": "restricted", "allow": allow},
                }
            ],
        )
        assert isinstance(created, RoomCreateResponse), created
        room_id = created.room_id

        status, body = await join_via(outsider, room_id, host_server)
        assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), body
        status, body = await join_via(guest, room_id, host_server)
        assert (status, body.get("room_id")) == (200, room_id), body
        member = await guest.room_get_state_event(room_id, "m.room.member", guest.user_id)
        assert member.content["membership"] == "join"
        assert member.content["join_authorised_via_users_server"] == host.user_id
        await send_text(guest, room_id, "in by membership")
        await wait_for_texts(host, room_id, ["in by membership"])
    finally:
        await bob.close()
        if created_on == "ours":
            await outsider.close()


@pytest.mark.parametrize("created_on", ["ours", "synapse"])
async def test_history_visibility_joined_hides_earlier_messages(ours, synapse_peer, created_on):
    """With history_visibility "joined", the joining server gets nothing readable from
    before the join: not over backfill, and its user does not see it."""
    alice = await ours.client("alice")
    bob = await synapse_peer.client()
    host, guest = (alice, bob) if created_on == "ours" else (bob, alice)
    try:
        room_id, alias = await public_room(host, "private-past")
        resp = await host.room_put_state(
            room_id, "m.room.history_visibility", {"history_visibility": "joined"}
        )
        assert getattr(resp, "event_id", None), resp
        await send_text(host, room_id, "said before you came")
        assert isinstance(await guest.join(alias), JoinResponse)
        await send_text(host, room_id, "said after you came")
        await wait_for_texts(guest, room_id, ["said after you came"])
        assert await history(guest, room_id) == ["said after you came"]
        # Nor does the guest's server hold it anywhere (what it got is redacted).
        if guest is alice:
            stored = await ours.db.fetchval(
                "SELECT count(*) FROM events WHERE room_id = $1 AND json LIKE $2",
                room_id,
                "%said before you came%",
            )
        else:
            stored = await synapse_peer.db_fetchval(
                "SELECT count(*) FROM event_json WHERE room_id = $1 AND json LIKE $2",
                room_id,
                "%said before you came%",
            )
        assert stored == 0
    finally:
        await bob.close()


async def test_a_server_that_does_not_admit_synapse_refuses_its_invites_and_joins(
    make_server, synapse_peer
):
    closed = await start_federating_server(
        make_server, synapse_peer.ca, OUR_HOST, [], sock=synapse_peer.take_socket()
    )
    carol = await closed.client("carol")
    bob = await synapse_peer.client()
    try:
        created = await bob.room_create(invite=[])
        assert isinstance(created, RoomCreateResponse), created
        invited = await bob.room_invite(created.room_id, carol.user_id)
        assert not isinstance(invited, RoomInviteResponse), invited
        stored = await closed.db.fetchval(
            "SELECT count(*) FROM events WHERE room_id = $1", created.room_id
        )
        assert stored == 0
        # Nor does it let its own users reach Synapse's rooms.
        room_id, alias = await public_room(bob, "unreachable")
        refused = await carol.join(alias)
        assert not isinstance(refused, JoinResponse), refused
        assert (
            await closed.db.fetchval("SELECT count(*) FROM events WHERE room_id = $1", room_id) == 0
        )
    finally:
        await bob.close()


@pytest.mark.parametrize("created_on", ["ours", "synapse"])
async def test_joining_a_room_with_many_members(ours, synapse_peer, created_on):
    """A send_join answer with the state of 30 members (each event signed by its origin)
    is checked and taken in whole; the joiner sees every member."""
    members = 30
    if created_on == "ours":
        host_users = [await ours.client(f"m{i}") for i in range(members)]
        guest = await synapse_peer.client()
    else:
        host_users = [await synapse_peer.client() for _ in range(members)]
        guest = await ours.client("guest")
    host = host_users[0]
    try:
        room_id, alias = await public_room(host, "crowd")
        for user in host_users[1:]:
            assert isinstance(await user.join(alias), JoinResponse)
        assert isinstance(await guest.join(alias), JoinResponse)
        resp = await guest.joined_members(room_id)
        assert {m.user_id for m in resp.members} == {u.user_id for u in host_users} | {
            guest.user_id
        }
        await send_text(guest, room_id, "hello, crowd")
        await wait_for_texts(host_users[-1], room_id, ["hello, crowd"])
    finally:
        for client in (*host_users, guest):
            if synapse_peer.server_name in client.user_id:
                await client.close()
