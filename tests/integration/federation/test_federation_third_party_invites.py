"""Third-party invites across two servers of ours: the identity server tells the
invitee's server (onbind), which has the inviter's server make the invite through
PUT /exchange_third_party_invite; that server checks the signed block and the key's
validity before inviting. With the invitee's server out of the room, and in it."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

import pytest
from nio import JoinResponse, RoomCreateResponse, RoomGetStateResponse, RoomPreset, SyncResponse

from tests.federation_ca import start_federating_server
from tests.integration.federation.helpers import signed_request
from tests.integration.identity_server import ID_TOKEN, IdentityServer

V3 = "/_matrix/client/v3"
ADDRESS = "colleague@agence.example"


@pytest.fixture
async def ids(tmp_path):
    server = IdentityServer(tmp_path)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def pair_with_ids(make_server, ca, ids):
    identity = {"identity": {"id_servers": ["127.0.0.1"], "id_servers_insecure_tls": True}}
    hs1 = await start_federating_server(
        make_server, ca, "hs1.test.local", ["hs2.test.local"], config=identity
    )
    hs2 = await start_federating_server(
        make_server, ca, "hs2.test.local", ["hs1.test.local"], config=identity
    )
    return hs1, hs2


async def _member(client, room_id: str, user_id: str) -> str | None:
    resp = await client.room_get_state(room_id)
    assert isinstance(resp, RoomGetStateResponse), resp
    for e in resp.events:
        if e["type"] == "m.room.member" and e["state_key"] == user_id:
            return e["content"]["membership"]
    return None


async def _eventually(check, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def _threepid_invite(server, client, room_id: str, ids: IdentityServer) -> None:
    status, body = await server.request(
        "POST",
        f"{V3}/rooms/{quote(room_id)}/invite",
        token=client.access_token,
        json={
            "id_server": ids.name,
            "id_access_token": ID_TOKEN,
            "medium": "email",
            "address": ADDRESS,
        },
    )
    assert (status, body) == (200, {})


@pytest.mark.parametrize("joiner_on_hs2", [False, True])
async def test_onbind_at_the_invitees_server_exchanges_with_the_inviters(
    pair_with_ids, ids, joiner_on_hs2
):
    hs1, hs2 = pair_with_ids
    alice = await hs1.client("alice")
    bob = await hs2.client("bob")
    created = await alice.room_create(preset=RoomPreset.private_chat)
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id
    if joiner_on_hs2:
        carol = await hs2.client("carol")
        await alice.room_invite(room_id, carol.user_id)
        assert isinstance(await carol.join(room_id), JoinResponse)
    await _threepid_invite(hs1, alice, room_id, ids)
    if joiner_on_hs2:
        # As SyTest does: hs2 has the m.room.third_party_invite before the onbind.
        await _eventually(lambda: _has_third_party_invite(carol, room_id))

    before = await alice.sync(timeout=0)
    assert isinstance(before, SyncResponse), before
    status, body = await ids.onbind(hs2.base_url, ADDRESS, bob.user_id)
    assert (status, body) == (200, {})
    await _eventually(lambda: _has_membership(alice, room_id, bob.user_id, "invite"))
    # The inviter's /sync has the invite in the room's timeline.
    after = await alice.sync(timeout=0, since=before.next_batch)
    assert isinstance(after, SyncResponse), after
    timeline = after.rooms.join[room_id].timeline.events if room_id in after.rooms.join else []
    assert [
        e.source["content"]["membership"]
        for e in timeline
        if e.source.get("state_key") == bob.user_id
    ] == ["invite"]
    assert isinstance(await bob.join(room_id), JoinResponse)
    await _eventually(lambda: _has_membership(alice, room_id, bob.user_id, "join"))


async def _has_third_party_invite(client, room_id: str) -> bool:
    resp = await client.room_get_state(room_id)
    assert isinstance(resp, RoomGetStateResponse), resp
    return any(e["type"] == "m.room.third_party_invite" for e in resp.events)


async def _has_membership(client, room_id: str, user_id: str, membership: str) -> bool:
    return await _member(client, room_id, user_id) == membership


async def test_exchange_refuses_what_it_cannot_check(pair_with_ids, ids, ca):
    hs1, hs2 = pair_with_ids
    alice = await hs1.client("alice")
    created = await alice.room_create(preset=RoomPreset.private_chat)
    room_id = created.room_id
    await _threepid_invite(hs1, alice, room_id, ids)
    [stored] = ids.invites
    path = f"/_matrix/federation/v1/exchange_third_party_invite/{quote(room_id)}"
    bob = f"@bob:{hs2.server_name}"

    def event(signed, sender=alice.user_id, state_key=bob) -> dict:
        return {
            "type": "m.room.member",
            "room_id": room_id,
            "sender": sender,
            "state_key": state_key,
            "content": {"membership": "invite", "third_party_invite": {"signed": signed}},
        }

    good = ids.sign({"mxid": bob, "token": stored["token"]})
    ids_other = IdentityServer(ids.tmp_path / "other")
    ids_other.name = ids.name
    forged = ids_other.sign({"mxid": bob, "token": stored["token"]})
    for body, status, errcode in [
        (event(forged), 403, "M_FORBIDDEN"),  # not signed by the invite's keys
        (event(good, sender=f"@x:{hs2.server_name}"), 403, "M_FORBIDDEN"),  # not our user
        (event(good, state_key="@other:hs2.test.local"), 400, "M_BAD_JSON"),
        (event({"mxid": bob}), 400, "M_BAD_JSON"),
        ({**event(good), "type": "m.room.message"}, 400, "M_BAD_JSON"),
    ]:
        got, answer = await signed_request(hs2, hs1, ca, "PUT", path, body)
        assert (got, answer.get("errcode")) == (status, errcode), body
    assert await _member(alice, room_id, bob) is None

    # Asked by a server that is not the invitee's: refused too.
    carol_signed = ids.sign({"mxid": f"@carol:{hs1.server_name}", "token": stored["token"]})
    got, answer = await signed_request(
        hs2, hs1, ca, "PUT", path, event(carol_signed, state_key=f"@carol:{hs1.server_name}")
    )
    assert (got, answer.get("errcode")) == (403, "M_FORBIDDEN")
