"""Guest accounts (spec: "Guest access"), behind registration.guests."""

from __future__ import annotations

from urllib.parse import quote

from nio import RoomPreset

from tests.harness import PASSWORD

V3 = "/_matrix/client/v3"


async def _guest(server) -> dict:
    status, body = await server.request("POST", f"{V3}/register?kind=guest", json={})
    assert status == 200, body
    return body


async def test_guests_refused_unless_enabled(server):
    status, body = await server.request("POST", f"{V3}/register?kind=guest", json={})
    assert status == 403 and body["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"
    assert await server.db.fetchval("SELECT count(*) FROM users") == 0


async def test_guest_joins_only_can_join_rooms_and_is_removed_on_revocation(make_server):
    server = await make_server(registration={"open": True, "guests": True})
    guest = await _guest(server)
    token = guest["access_token"]
    status, me = await server.request("GET", f"{V3}/account/whoami", token=token)
    assert status == 200 and me["is_guest"] is True and me["user_id"] == guest["user_id"]

    # The whole event stream is not for guests: they name a room.
    status, body = await server.request("GET", f"{V3}/events?timeout=0", token=token)
    assert status == 403 and body["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"

    alice = await server.client()
    room_id = (await alice.room_create(preset=RoomPreset.public_chat)).room_id
    status, body = await server.request("POST", f"{V3}/rooms/{room_id}/join", token=token, json={})
    assert status == 403 and body["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"
    assert await server.hs.events.membership(room_id, guest["user_id"]) is None

    await alice.room_put_state(room_id, "m.room.guest_access", {"guest_access": "can_join"})
    status, _ = await server.request("POST", f"{V3}/rooms/{room_id}/join", token=token, json={})
    assert status == 200
    status, sent = await server.request(
        "PUT",
        f"{V3}/rooms/{room_id}/send/m.room.message/t1",
        token=token,
        json={"msgtype": "m.text", "body": "sup"},
    )
    assert status == 200
    # A guest may not set state, create rooms or change passwords.
    status, body = await server.request(
        "PUT", f"{V3}/rooms/{room_id}/state/m.room.topic", token=token, json={"topic": "x"}
    )
    assert status == 403 and body["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"
    status, body = await server.request("POST", f"{V3}/createRoom", token=token, json={})
    assert status == 403 and body["errcode"] == "M_GUEST_ACCESS_FORBIDDEN"

    await alice.room_put_state(room_id, "m.room.guest_access", {"guest_access": "forbidden"})
    assert await server.hs.events.membership(room_id, guest["user_id"]) == "leave"


async def test_guest_upgrades_only_themself(make_server):
    server = await make_server(registration={"open": True, "guests": True})
    guest = await _guest(server)
    other = await _guest(server)
    localpart = guest["user_id"][1:].split(":")[0]
    body = {
        "username": localpart,
        "password": PASSWORD,
        "guest_access_token": other["access_token"],
        "auth": {"type": "m.login.dummy"},
    }
    status, err = await server.request("POST", f"{V3}/register", json=body)
    assert status == 403 and err["errcode"] == "M_FORBIDDEN"
    body["guest_access_token"] = guest["access_token"]
    status, upgraded = await server.request("POST", f"{V3}/register", json=body)
    assert status == 200 and upgraded["user_id"] == guest["user_id"]
    status, me = await server.request("GET", f"{V3}/account/whoami", token=upgraded["access_token"])
    assert me["is_guest"] is False
    # Now a full user: may create rooms, and logs in with the password.
    status, _ = await server.request(
        "POST", f"{V3}/createRoom", token=upgraded["access_token"], json={}
    )
    assert status == 200
    await server.login(localpart)


async def test_join_keeps_custom_content(server):
    alice = await server.client()
    bob = await server.client()
    room_id = (await alice.room_create(preset=RoomPreset.public_chat)).room_id
    status, _ = await server.request(
        "POST", f"{V3}/join/{quote(room_id)}", token=bob.access_token, json={"foo": "bar"}
    )
    assert status == 200
    ev = await server.hs.events.current_state_event(room_id, "m.room.member", bob.user_id)
    assert ev.content["foo"] == "bar" and ev.content["membership"] == "join"


async def _found(server, client, user_id: str) -> list[str]:
    """Who the directory lists to `client` for a search by `user_id`'s localpart."""
    status, body = await server.request(
        "POST",
        f"{V3}/user_directory/search",
        token=client.access_token,
        json={"search_term": user_id[1:].split(":")[0]},
    )
    assert status == 200, body
    return [r["user_id"] for r in body["results"]]


async def test_guests_are_found_only_by_co_members(make_server):
    """A guest in a public room is not listed to everyone the room is public to, as an
    external user is not (issue 15): only those sharing a room find them."""
    server = await make_server(registration={"open": True, "guests": True})
    alice, bob, carol = [await server.client() for _ in range(3)]
    room_id = (await alice.room_create(preset=RoomPreset.public_chat)).room_id
    await alice.room_put_state(room_id, "m.room.guest_access", {"guest_access": "can_join"})
    guest = await _guest(server)
    status, _ = await server.request(
        "POST", f"{V3}/rooms/{room_id}/join", token=guest["access_token"], json={}
    )
    assert status == 200
    await bob.join(room_id)  # bob shares the room with the guest; carol is in none

    assert await _found(server, bob, guest["user_id"]) == [guest["user_id"]]
    assert await _found(server, carol, guest["user_id"]) == []
    # An ordinary member of the same public room is listed to carol: only the guest is not.
    assert await _found(server, carol, bob.user_id) == [bob.user_id]
