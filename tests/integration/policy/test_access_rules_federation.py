"""Access rules across federation: hs1 enforces them and counts hs2's users as external;
hs2 enforces nothing. What hs1 refuses of its own users it refuses of hs2's, whether asked
in a handshake (make_join, invite) or sent as PDUs that hs2 accepted."""

from __future__ import annotations

from nio import RoomCreateResponse, RoomGetStateResponse, RoomPreset, RoomVisibility

from homeserver.policy.rules import ACCESS_RULES
from tests.federation_ca import start_federating_server


async def _pair(make_server, ca):
    hs1 = await start_federating_server(
        make_server,
        ca,
        "hs1.test.local",
        ["hs2.test.local"],
        config={"access_rules": {"enabled": True, "external_servers": ["hs2.test.local"]}},
    )
    hs2 = await start_federating_server(make_server, ca, "hs2.test.local", ["hs1.test.local"])
    return hs1, hs2


async def _state(client, room_id: str) -> dict[tuple[str, str], dict]:
    resp = await client.room_get_state(room_id)
    assert isinstance(resp, RoomGetStateResponse), resp
    return {(e["type"], e["state_key"]): e["content"] for e in resp.events}


async def _until_message(client, room_id: str, body: str) -> None:
    """Syncs until `body` arrives in `room_id` (bounded by the sync count, not a clock)."""
    for _ in range(30):
        sync = await client.sync(timeout=2000)
        room = sync.rooms.join.get(room_id)
        if room and any(getattr(e, "body", None) == body for e in room.timeline.events):
            return
    raise AssertionError(f"{body!r} never arrived")


async def test_restricted_and_unrestricted_across_federation(make_server, ca):
    hs1, hs2 = await _pair(make_server, ca)
    alice = await hs1.client("alice")
    bob = await hs2.client("bob")
    public = await alice.room_create(
        visibility=RoomVisibility.public, preset=RoomPreset.public_chat, alias="lobby"
    )
    assert isinstance(public, RoomCreateResponse), public
    # bob's server asks hs1 for a join template: refused, nothing changes.
    resp = await bob.join(f"#lobby:{hs1.server_name}")
    assert resp.status_code == "M_FORBIDDEN", resp
    assert ("m.room.member", bob.user_id) not in await _state(alice, public.room_id)

    room = (await alice.room_create()).room_id
    resp = await alice.room_invite(room, bob.user_id)
    assert resp.status_code == "M_FORBIDDEN" and "external" in resp.message, resp
    assert ("m.room.member", bob.user_id) not in await _state(alice, room)

    # Unrestricted: by invitation, and bob gets no power.
    await alice.room_put_state(room, ACCESS_RULES, {"rule": "unrestricted"})
    resp = await alice.room_invite(room, bob.user_id)
    assert getattr(resp, "status_code", None) is None, resp
    joined = await bob.join(room)
    assert getattr(joined, "room_id", None) == room, joined
    levels = (await _state(alice, room))[("m.room.power_levels", "")]
    resp = await alice.room_put_state(
        room, "m.room.power_levels", {**levels, "users": {**levels["users"], bob.user_id: 50}}
    )
    assert resp.status_code == "M_FORBIDDEN", resp


async def test_remote_server_cannot_bypass(make_server, ca):
    """hs2 runs no rules: what bob sends there is stored there; hs1 rejects it."""
    hs1, hs2 = await _pair(make_server, ca)
    alice = await hs1.client("alice")
    bob = await hs2.client("bob")
    dave = await hs2.client("dave")
    # A direct room may hold an external user; both are its admins.
    dm = await alice.room_create(
        is_direct=True, invite=[bob.user_id], preset=RoomPreset.trusted_private_chat
    )
    assert isinstance(dm, RoomCreateResponse), dm
    assert getattr(await bob.join(dm.room_id), "room_id", None) == dm.room_id
    # bob names the room, invites a third member and gives himself a power level on
    # hs2, which stores all of it; then a message, which hs1 accepts.
    named = await bob.room_put_state(dm.room_id, "m.room.name", {"name": "renamed"})
    assert getattr(named, "status_code", None) is None, named
    invited = await bob.room_invite(dm.room_id, dave.user_id)
    assert getattr(invited, "status_code", None) is None, invited
    await bob.room_send(dm.room_id, "m.room.message", {"msgtype": "m.text", "body": "after"})
    on_hs2 = await _state(bob, dm.room_id)
    assert on_hs2[("m.room.name", "")] == {"name": "renamed"}
    assert on_hs2[("m.room.member", dave.user_id)]["membership"] == "invite"

    await _until_message(alice, dm.room_id, "after")
    on_hs1 = await _state(alice, dm.room_id)
    assert ("m.room.name", "") not in on_hs1
    assert ("m.room.member", dave.user_id) not in on_hs1
    assert on_hs1[(ACCESS_RULES, "")] == {"rule": "direct"}

    # An external user cannot open a DM with ours either: hs1 refuses the invite.
    theirs = await bob.room_create(is_direct=True, invite=[alice.user_id])
    assert isinstance(theirs, RoomCreateResponse), theirs
    sync = await alice.sync(timeout=0)
    assert theirs.room_id not in sync.rooms.invite
