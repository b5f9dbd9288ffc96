"""What an appservice may do in its namespaces that users may not, and the reverse:
aliases it reserved, inviting users it has yet to create, deactivating its users."""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web
from nio import RoomCreateError, RoomCreateResponse, RoomInviteResponse, RoomPreset

from tests.integration.appservice.helpers import SERVER_NAME, write_registration

CLIENT = "/_matrix/client/v3"


async def test_reserved_aliases_belong_to_the_appservice(make_server, tmp_path):
    reg = write_registration(tmp_path)
    server = await make_server(app_services=[str(reg.path)])
    alice = await server.client("alice")
    created = await alice.room_create(preset=RoomPreset.public_chat)
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id
    alias = f"#_bridge_room:{SERVER_NAME}"
    path = f"{CLIENT}/directory/room/{quote(alias)}"

    # A user cannot take an alias of the appservice's exclusive namespace, neither by
    # PUT nor at room creation, and nothing is created.
    status, body = await server.request(
        "PUT", path, json={"room_id": room_id}, token=alice.access_token
    )
    assert (status, body["errcode"]) == (400, "M_EXCLUSIVE")
    refused = await alice.room_create(alias="_bridge_other")
    assert isinstance(refused, RoomCreateError) and refused.status_code == "M_EXCLUSIVE"
    assert await server.hs.directory.alias(alias) is None

    # The appservice (its sender is not in the room) maps it, and can remove it again.
    status, body = await server.request("PUT", path, json={"room_id": room_id}, token=reg.as_token)
    assert status == 200, body
    status, body = await server.request("GET", path)
    assert (status, body["room_id"]) == (200, room_id)
    status, body = await server.request("DELETE", path, token=reg.as_token)
    assert status == 200, body
    assert await server.hs.directory.alias(alias) is None

    # Outside reserved namespaces nothing changed: a member maps an alias.
    status, body = await server.request(
        "PUT",
        f"{CLIENT}/directory/room/{quote('#plain:' + SERVER_NAME)}",
        json={"room_id": room_id},
        token=alice.access_token,
    )
    assert status == 200, body


async def test_inviting_an_unknown_namespaced_user_asks_the_appservice(make_server, tmp_path):
    reg = write_registration(tmp_path)
    server = await make_server(app_services=[str(reg.path)])
    ghost = f"@_bridge_ghost:{SERVER_NAME}"
    asked: list[str] = []

    async def query_user(request: web.Request) -> web.Response:
        # The bridge creates the user it is asked about, then says it exists.
        asked.append(request.match_info["user_id"])
        status, body = await server.request(
            "POST",
            f"{CLIENT}/register",
            json={"type": "m.login.application_service", "username": "_bridge_ghost"},
            token=reg.as_token,
        )
        assert status == 200, body
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/_matrix/app/v1/users/{user_id}", query_user)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", reg.port).start()
    try:
        alice = await server.client("alice")
        created = await alice.room_create()
        assert isinstance(created, RoomCreateResponse), created
        invited = await alice.room_invite(created.room_id, ghost)
        assert isinstance(invited, RoomInviteResponse), invited
        assert asked == [ghost]
        assert await server.hs.events.membership(created.room_id, ghost) == "invite"

        # A user the bridge does not know stays unknown: 404, no invite.
        status, body = await server.request(
            "POST",
            f"{CLIENT}/rooms/{created.room_id}/invite",
            json={"user_id": f"@nobody:{SERVER_NAME}"},
            token=alice.access_token,
        )
        assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    finally:
        await runner.cleanup()


async def test_appservice_deactivates_its_user_without_password(make_server, tmp_path):
    reg = write_registration(tmp_path)
    server = await make_server(app_services=[str(reg.path)])
    status, body = await server.request(
        "POST",
        f"{CLIENT}/register",
        json={"type": "m.login.application_service", "username": "_bridge_gone"},
        token=reg.as_token,
    )
    assert status == 200, body
    ghost = body["user_id"]

    status, body = await server.request(
        "POST", f"{CLIENT}/account/deactivate?user_id={quote(ghost)}", json={}, token=reg.as_token
    )
    assert status == 200, body
    assert not await server.hs.accounts.users.is_active(ghost)

    # A user still authenticates with a password first.
    alice = await server.client("alice")
    status, body = await server.request(
        "POST", f"{CLIENT}/account/deactivate", json={}, token=alice.access_token
    )
    assert status == 401 and "flows" in body
    assert await server.hs.accounts.users.is_active(alice.user_id)


async def test_appservice_room_lists_are_separate_from_the_servers(make_server, tmp_path):
    reg = write_registration(tmp_path)
    server = await make_server(app_services=[str(reg.path)])
    alice = await server.client("alice")
    created = await alice.room_create(name="Bridged")
    assert isinstance(created, RoomCreateResponse), created
    room_id = created.room_id
    listing = f"{CLIENT}/directory/list/appservice/irc/{room_id}"

    async def listed(**body) -> bool:
        status, answer = await server.request(
            "POST", f"{CLIENT}/publicRooms", json=body, token=alice.access_token
        )
        assert status == 200, answer
        return room_id in [r["room_id"] for r in answer["chunk"]]

    # Only an appservice edits appservice lists; a bad visibility changes nothing.
    status, body = await server.request(
        "PUT", listing, json={"visibility": "public"}, token=alice.access_token
    )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, body = await server.request(
        "PUT", listing, json={"visibility": "loud"}, token=reg.as_token
    )
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    assert not await listed(third_party_instance_id="bridge|irc")

    status, body = await server.request(
        "PUT", listing, json={"visibility": "public"}, token=reg.as_token
    )
    assert status == 200, body
    assert not await listed()
    assert await listed(third_party_instance_id="bridge|irc")
    assert not await listed(third_party_instance_id="bridge|slack")
    assert await listed(include_all_networks=True)
    status, body = await server.request(
        "POST",
        f"{CLIENT}/publicRooms",
        json={"third_party_instance_id": "no-separator"},
        token=alice.access_token,
    )
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")

    status, body = await server.request("DELETE", listing, token=reg.as_token)
    assert status == 200, body
    assert not await listed(third_party_instance_id="bridge|irc")
    assert not await listed(include_all_networks=True)


async def test_rate_limited_flag_exempts_an_appservice_and_its_users(make_server, tmp_path):
    """rate_limited: false lets an appservice's users past the per-user limits (a bridge
    relays many people through one connection); true keeps them, as for anyone."""
    free = write_registration(tmp_path, "free", prefix="_free_", rate_limited=False)
    limited = write_registration(tmp_path, "limited", prefix="_lim_", rate_limited=True)
    server = await make_server(
        app_services=[str(free.path), str(limited.path)],
        rate_limits={"enabled": True, "per_user": {"per_second": 0.01, "burst": 2}},
    )

    async def statuses(reg, localpart: str) -> list[int]:
        status, body = await server.request(
            "POST",
            f"{CLIENT}/register",
            json={"type": "m.login.application_service", "username": localpart},
            token=reg.as_token,
        )
        assert status == 200, body
        user_id = quote(f"@{localpart}:{SERVER_NAME}")
        found = []
        for _ in range(4):
            status, _body = await server.request(
                "POST", f"{CLIENT}/createRoom?user_id={user_id}", json={}, token=reg.as_token
            )
            found.append(status)
        return found

    assert await statuses(free, "_free_ghost") == [200, 200, 200, 200]
    assert await statuses(limited, "_lim_ghost") == [200, 200, 429, 429]
