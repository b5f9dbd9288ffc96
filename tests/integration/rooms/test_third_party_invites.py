"""Third-party (e-mail) invites: /invite and createRoom with an address, looked up and
stored at a listed identity server; the identity server's onbind making the invite; the
signature and the key's validity checked; /join with third_party_signed; refusals that
change nothing. The identity server is tests/integration/identity_server.py's fake."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from nio import (
    JoinResponse,
    RoomCreateResponse,
    RoomGetStateResponse,
    RoomPreset,
    RoomPutStateResponse,
    SyncResponse,
)

from tests.integration.identity_server import ID_TOKEN, IdentityServer

V3 = "/_matrix/client/v3"
ADDRESS = "colleague@ministere.example"


@pytest.fixture
async def ids(tmp_path):
    server = IdentityServer(tmp_path)
    await server.start()
    yield server
    await server.stop()


def _listing(ids: IdentityServer) -> dict:
    return {"identity": {"id_servers": ["127.0.0.1"], "id_servers_insecure_tls": True}}


async def _private_room(client) -> str:
    resp = await client.room_create(preset=RoomPreset.private_chat)
    assert isinstance(resp, RoomCreateResponse), resp
    return resp.room_id


async def _state(client, room_id: str) -> list[dict]:
    resp = await client.room_get_state(room_id)
    assert isinstance(resp, RoomGetStateResponse), resp
    return resp.events


async def _state_ids(client, room_id: str) -> set[tuple[str, str, str]]:
    return {(e["type"], e["state_key"], e["event_id"]) for e in await _state(client, room_id)}


async def _member(client, room_id: str, user_id: str) -> dict | None:
    for e in await _state(client, room_id):
        if e["type"] == "m.room.member" and e["state_key"] == user_id:
            return e["content"]
    return None


def _invite_body(ids: IdentityServer, **over) -> dict:
    body = {
        "id_server": ids.name,
        "id_access_token": ID_TOKEN,
        "medium": "email",
        "address": ADDRESS,
    }
    body.update(over)
    return {k: v for k, v in body.items() if v is not None}


async def _invite(server, client, room_id: str, body: dict) -> tuple[int, dict]:
    return await server.request(
        "POST", f"{V3}/rooms/{quote(room_id)}/invite", token=client.access_token, json=body
    )


async def test_inviting_a_bound_address_is_a_plain_invite(make_server, ids):
    server = await make_server(**_listing(ids))
    alice = await server.client("alice")
    bob = await server.client("bob")
    ids.bound[ADDRESS] = bob.user_id
    room_id = await _private_room(alice)

    status, body = await _invite(server, alice, room_id, _invite_body(ids))
    assert (status, body) == (200, {})
    assert ids.lookups == 1 and ids.invites == []
    member = await _member(alice, room_id, bob.user_id)
    assert member is not None and member["membership"] == "invite"
    assert "third_party_invite" not in member
    assert not [e for e in await _state(alice, room_id) if e["type"] == "m.room.third_party_invite"]


async def test_unbound_address_then_onbind_invites_and_the_user_joins(make_server, ids):
    server = await make_server(**_listing(ids))
    alice = await server.client("alice")
    bob = await server.client("bob")
    room_id = await _private_room(alice)

    status, body = await _invite(server, alice, room_id, _invite_body(ids))
    assert (status, body) == (200, {})
    [stored] = ids.invites
    assert stored["room_id"] == room_id and stored["sender"] == alice.user_id
    assert stored["address"] == ADDRESS and stored["medium"] == "email"
    [event] = [e for e in await _state(alice, room_id) if e["type"] == "m.room.third_party_invite"]
    assert event["state_key"] == stored["token"]
    content = event["content"]
    assert content["display_name"] == "Bob"
    assert content["public_key"] == ids.public_key()
    assert [k["public_key"] for k in content["public_keys"]] == [
        ids.public_key(),
        ids.public_key(ephemeral=True),
    ]
    assert content["key_validity_url"].startswith(f"https://{ids.name}/")
    assert await _member(alice, room_id, bob.user_id) is None

    first = await bob.sync(timeout=0)
    assert isinstance(first, SyncResponse)
    status, body = await ids.onbind(server.base_url, ADDRESS, bob.user_id)
    assert (status, body) == (200, {})
    member = await _member(alice, room_id, bob.user_id)
    assert member is not None and member["membership"] == "invite"
    assert member["third_party_invite"]["display_name"] == "Bob"
    assert member["third_party_invite"]["signed"]["token"] == stored["token"]
    sync = await bob.sync(timeout=0, since=first.next_batch)
    assert room_id in sync.rooms.invite

    joined = await bob.join(room_id)
    assert isinstance(joined, JoinResponse), joined
    member = await _member(alice, room_id, bob.user_id)
    assert member is not None and member["membership"] == "join"

    # The identity server calling again changes nothing.
    status, _ = await ids.onbind(server.base_url, ADDRESS, bob.user_id)
    assert status == 200
    assert (await _member(alice, room_id, bob.user_id) or {})["membership"] == "join"


async def test_create_room_with_invite_3pid(make_server, ids):
    server = await make_server(**_listing(ids))
    alice = await server.client("alice")
    bob = await server.client("bob")
    ids.bound["bound@ministere.example"] = bob.user_id
    status, body = await server.request(
        "POST",
        f"{V3}/createRoom",
        token=alice.access_token,
        json={
            "preset": "private_chat",
            "invite_3pid": [
                _invite_body(ids, address="bound@ministere.example"),
                _invite_body(ids),
            ],
        },
    )
    assert status == 200, body
    room_id = body["room_id"]
    assert (await _member(alice, room_id, bob.user_id) or {}).get("membership") == "invite"
    [stored] = ids.invites
    invites = [e for e in await _state(alice, room_id) if e["type"] == "m.room.third_party_invite"]
    assert [e["state_key"] for e in invites] == [stored["token"]]


@pytest.mark.parametrize("how", ["wrong signature", "revoked key", "unreachable"])
async def test_invite_refused_when_the_key_does_not_hold(make_server, ids, how):
    server = await make_server(**_listing(ids))
    alice = await server.client("alice")
    bob = await server.client("bob")
    room_id = await _private_room(alice)
    status, _ = await _invite(server, alice, room_id, _invite_body(ids))
    assert status == 200

    async def revoke() -> None:
        ids.rotate_keys()

    if how == "wrong signature":
        ids.rotate_keys()  # signs with keys the room's invite does not name
        status, body = await ids.onbind(server.base_url, ADDRESS, bob.user_id)
    elif how == "revoked key":
        status, body = await ids.onbind(server.base_url, ADDRESS, bob.user_id, after_signing=revoke)
    else:
        status, body = await ids.onbind(
            server.base_url, ADDRESS, bob.user_id, after_signing=ids.stop
        )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert await _member(alice, room_id, bob.user_id) is None
    resp = await bob.join(room_id)
    assert not isinstance(resp, JoinResponse)
    assert await _member(alice, room_id, bob.user_id) is None


async def test_key_validity_url_on_an_unlisted_server_is_not_asked(make_server, ids):
    server = await make_server(**_listing(ids))
    alice = await server.client("alice")
    bob = await server.client("bob")
    room_id = await _private_room(alice)
    # The same fake, named by a host the operator did not list: never contacted.
    ids.validity_host = ids.name.replace("127.0.0.1", "localhost")
    status, _ = await _invite(server, alice, room_id, _invite_body(ids))
    assert status == 200
    status, body = await ids.onbind(server.base_url, ADDRESS, bob.user_id)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert await _member(alice, room_id, bob.user_id) is None


async def test_join_with_third_party_signed(make_server, ids):
    server = await make_server(**_listing(ids))
    alice = await server.client("alice")
    bob = await server.client("bob")
    room_id = await _private_room(alice)
    status, _ = await _invite(server, alice, room_id, _invite_body(ids))
    assert status == 200
    [stored] = ids.invites
    path = f"{V3}/rooms/{quote(room_id)}/join"

    # Signed for someone else, or with a key the invite does not name: refused.
    other = ids.sign(
        {"mxid": alice.user_id, "sender": alice.user_id, "token": stored["token"]},
        ephemeral=True,
    )
    status, body = await server.request(
        "POST", path, token=bob.access_token, json={"third_party_signed": other}
    )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await server.request(
        "POST", path, token=bob.access_token, json={"third_party_signed": {"mxid": 3}}
    )
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")
    assert await _member(alice, room_id, bob.user_id) is None

    signed = ids.sign(
        {"mxid": bob.user_id, "sender": alice.user_id, "token": stored["token"]},
        ephemeral=True,
    )
    status, body = await server.request(
        "POST", path, token=bob.access_token, json={"third_party_signed": signed}
    )
    assert (status, body) == (200, {"room_id": room_id})
    assert (await _member(alice, room_id, bob.user_id) or {}).get("membership") == "join"


async def test_no_identity_server_configured_refuses_and_stores_nothing(make_server, ids):
    server = await make_server()  # the default: no identity server
    alice = await server.client("alice")
    room_id = await _private_room(alice)
    before = await _state_ids(alice, room_id)

    status, body = await _invite(server, alice, room_id, _invite_body(ids))
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await server.request(
        "POST",
        f"{V3}/createRoom",
        token=alice.access_token,
        json={"invite_3pid": [_invite_body(ids)]},
    )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert await _state_ids(alice, room_id) == before
    assert ids.lookups == 0 and ids.invites == []
    rooms = await alice.joined_rooms()
    assert rooms.rooms == [room_id]  # createRoom made no room


@pytest.mark.parametrize(
    ("over", "status", "errcode"),
    [
        ({"medium": None}, 400, "M_MISSING_PARAM"),
        ({"address": 42}, 400, "M_INVALID_PARAM"),
        ({"address": ""}, 400, "M_INVALID_PARAM"),
        ({"id_access_token": None}, 400, "M_MISSING_PARAM"),
        ({"id_server": "elsewhere.example"}, 403, "M_FORBIDDEN"),
    ],
)
async def test_bad_input_changes_nothing(make_server, ids, over, status, errcode):
    server = await make_server(**_listing(ids))
    alice = await server.client("alice")
    room_id = await _private_room(alice)
    before = await _state_ids(alice, room_id)

    got, body = await _invite(server, alice, room_id, _invite_body(ids, **over))
    assert (got, body["errcode"]) == (status, errcode)
    got, body = await server.request(
        "POST",
        f"{V3}/createRoom",
        token=alice.access_token,
        json={"invite_3pid": [_invite_body(ids, **over)]},
    )
    assert (got, body["errcode"]) == (status, errcode)
    assert await _state_ids(alice, room_id) == before
    assert ids.lookups == 0 and ids.invites == []
    assert (await alice.joined_rooms()).rooms == [room_id]


async def test_only_members_with_invite_power_reach_the_identity_server(make_server, ids):
    server = await make_server(**_listing(ids))
    alice = await server.client("alice")
    mallory = await server.client("mallory")
    room_id = await _private_room(alice)
    # Not in the room: refused before any lookup.
    status, body = await _invite(server, mallory, room_id, _invite_body(ids))
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert ids.lookups == 0
    # In the room without the invite power level: refused before the invite is stored.
    await alice.room_invite(room_id, mallory.user_id)
    assert isinstance(await mallory.join(room_id), JoinResponse)
    # (Room version 12: the creator's power comes from the create event, not "users".)
    put = await alice.room_put_state(room_id, "m.room.power_levels", {"invite": 50})
    assert isinstance(put, RoomPutStateResponse), put
    status, body = await _invite(server, mallory, room_id, _invite_body(ids))
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert ids.invites == []


async def test_onbind_refuses_bad_bodies(make_server, ids):
    server = await make_server(**_listing(ids))
    path = "/_matrix/federation/v1/3pid/onbind"
    status, body = await server.request("POST", path, json=["not", "an", "object"])
    assert (status, body["errcode"]) == (400, "M_NOT_JSON")
    status, body = await server.request(
        "POST", path, json={"mxid": "@someone:elsewhere.example", "invites": []}
    )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await server.request(
        "PUT", path, json={"mxid": f"@bob:{server.server_name}", "invites": "x"}
    )
    assert (status, body["errcode"]) == (400, "M_BAD_JSON")


async def test_restricted_rooms_refuse_addresses_of_external_servers(make_server, ids):
    """Access rules on (homeserver/policy): an address the e-mail map places on an external
    server is not invited into a restricted room, by /invite or createRoom, and the
    identity server never hears of it; an unrestricted room takes it."""
    server = await make_server(
        identity={
            **_listing(ids)["identity"],
            "domain_map": {"partenaire.example": "externe.example"},
        },
        access_rules={"enabled": True, "external_servers": ["externe.example"]},
    )
    alice = await server.client("alice")
    room_id = await _private_room(alice)
    external = _invite_body(ids, address="someone@partenaire.example")

    status, body = await _invite(server, alice, room_id, external)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body
    rooms_before = (await alice.joined_rooms()).rooms
    status, body = await server.request(
        "POST",
        f"{V3}/createRoom",
        token=alice.access_token,
        json={"invite_3pid": [external]},
    )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body
    assert (await alice.joined_rooms()).rooms == rooms_before
    assert ids.lookups == 0 and ids.invites == []
    assert not [e for e in await _state(alice, room_id) if e["type"] == "m.room.third_party_invite"]

    # An address of our own side is invited as before, and an unrestricted room takes
    # the external one.
    status, body = await _invite(server, alice, room_id, _invite_body(ids))
    assert (status, body) == (200, {})
    resp = await alice.room_put_state(
        room_id, "im.vector.room.access_rules", {"rule": "unrestricted"}
    )
    assert isinstance(resp, RoomPutStateResponse), resp
    status, body = await _invite(server, alice, room_id, external)
    assert (status, body) == (200, {})
    assert [i["address"] for i in ids.invites] == [ADDRESS, "someone@partenaire.example"]
