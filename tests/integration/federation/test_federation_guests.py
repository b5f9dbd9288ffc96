"""Guest accounts and rooms of other servers: guest access withdrawn over federation
removes our guests, and a guest may not join another server's room that does not let
guests join (spec, Client-Server API "Guest access")."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from nio import JoinResponse, RoomPreset, RoomVisibility

from tests.federation_ca import FEDERATED_PRESENCE, start_federating_server
from tests.integration.federation.helpers import eventually

V3 = "/_matrix/client/v3"
GUESTS = {"registration": {"open": True, "guests": True}}


@pytest.fixture
async def servers(make_server, ca):
    """hs1 registers guests; hs2 is another server of ours."""
    hs1 = await start_federating_server(
        make_server, ca, "hs1.test.local", ["hs2.test.local"], config={**GUESTS}
    )
    hs2 = await start_federating_server(
        make_server, ca, "hs2.test.local", ["hs1.test.local"], config=FEDERATED_PRESENCE
    )
    return hs1, hs2


async def _guest(server) -> dict:
    status, body = await server.request("POST", f"{V3}/register?kind=guest", json={})
    assert status == 200, body
    return body


async def _join(server, guest: dict, room_id: str) -> tuple[int, dict]:
    return await server.request(
        "POST", f"{V3}/join/{quote(room_id, safe='')}", token=guest["access_token"], json={}
    )


async def test_guests_leave_when_another_server_withdraws_guest_access(servers):
    """SyTest "Guest users are kicked from guest_access rooms on revocation of
    guest_access over federation"."""
    hs1, hs2 = servers
    alice = await hs1.client("alice")
    bob = await hs2.client("bob")
    created = await alice.room_create(
        visibility=RoomVisibility.public, preset=RoomPreset.public_chat, alias="guests"
    )
    room_id = created.room_id
    await alice.room_put_state(room_id, "m.room.guest_access", {"guest_access": "can_join"})
    levels = await alice.room_get_state_event(room_id, "m.room.power_levels")
    users = {**levels.content["users"], bob.user_id: 50}
    await alice.room_put_state(room_id, "m.room.power_levels", {**levels.content, "users": users})
    assert isinstance(await bob.join(f"#guests:{hs1.server_name}"), JoinResponse)
    guest = await _guest(hs1)
    status, body = await _join(hs1, guest, room_id)
    assert status == 200, body
    assert await hs1.hs.events.membership(room_id, guest["user_id"]) == "join"

    put = await bob.room_put_state(room_id, "m.room.guest_access", {"guest_access": "forbidden"})
    assert getattr(put, "event_id", None), put

    async def guest_left() -> bool:
        return await hs1.hs.events.membership(room_id, guest["user_id"]) == "leave"

    await eventually(guest_left)
    # The guest left by their own leave event, which hs2 receives too.
    member = await hs1.hs.events.current_state_event(room_id, "m.room.member", guest["user_id"])
    assert member is not None and member.sender == guest["user_id"]

    async def hs2_saw_it() -> bool:
        return await hs2.hs.events.membership(room_id, guest["user_id"]) == "leave"

    await eventually(hs2_saw_it)


@pytest.mark.parametrize("guest_access", [None, "forbidden", "can_join"])
async def test_a_guest_joins_another_servers_room_only_if_it_lets_guests_join(
    servers, guest_access
):
    """SyTest "Guest users denied access over federation if guest access prohibited":
    invited, the guest may join only when the invite's room state says can_join."""
    hs1, hs2 = servers
    bob = await hs2.client("bob")
    # (public_chat sets no guest access; private_chat would say can_join.)
    created = await bob.room_create(preset=RoomPreset.public_chat)
    room_id = created.room_id
    if guest_access is not None:
        await bob.room_put_state(room_id, "m.room.guest_access", {"guest_access": guest_access})
    guest = await _guest(hs1)
    invited = await bob.room_invite(room_id, guest["user_id"])
    assert not hasattr(invited, "status_code"), invited
    status, body = await _join(hs1, guest, room_id)
    if guest_access == "can_join":
        assert status == 200, body
        assert await hs2.hs.events.membership(room_id, guest["user_id"]) == "join"
    else:
        assert (status, body["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN"), body
        assert await hs2.hs.events.membership(room_id, guest["user_id"]) == "invite"


async def test_a_guest_may_not_join_an_unknown_room_of_another_server(servers):
    """Without an invite or a copy of the room, nothing says guests may join: refused
    before any other server is asked."""
    hs1, hs2 = servers
    bob = await hs2.client("bob")
    created = await bob.room_create(
        visibility=RoomVisibility.public, preset=RoomPreset.public_chat, alias="open"
    )
    await bob.room_put_state(created.room_id, "m.room.guest_access", {"guest_access": "can_join"})
    guest = await _guest(hs1)
    status, body = await hs1.request(
        "POST",
        f"{V3}/join/{quote('#open:' + hs2.server_name, safe='')}",
        token=guest["access_token"],
        json={},
    )
    assert (status, body["errcode"]) == (403, "M_GUEST_ACCESS_FORBIDDEN"), body
    assert await hs2.hs.events.membership(created.room_id, guest["user_id"]) is None
