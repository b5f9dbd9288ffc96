"""Third-party networks: the protocols two bridges list, merged, and lookups passed on to
the bridges with the caller's fields."""

from __future__ import annotations

from aiohttp import web

from tests.integration.appservice.helpers import write_registration

CLIENT = "/_matrix/client/v3"


async def _fake_bridge(reg, instances: list[dict], users: list) -> tuple[web.AppRunner, list]:
    """An appservice answering protocol metadata and user lookups; records what it got."""
    seen: list = []

    async def protocol(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == f"Bearer {reg.hs_token}"
        seen.append(("protocol", request.match_info["protocol"]))
        return web.json_response(
            {"user_fields": ["nick"], "location_fields": [], "icon": "mxc://x/y", **instances}
        )

    async def user(request: web.Request) -> web.Response:
        seen.append(("user", request.match_info["protocol"], dict(request.query)))
        return web.json_response(users)

    app = web.Application()
    app.router.add_get("/_matrix/app/v1/thirdparty/protocol/{protocol}", protocol)
    app.router.add_get("/_matrix/app/v1/thirdparty/user/{protocol}", user)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", reg.port).start()
    return runner, seen


async def test_protocols_merged_and_lookups_passed_on(make_server, tmp_path):
    one = write_registration(tmp_path, "one", "_one_", protocols=["irc"])
    two = write_registration(tmp_path, "two", "_two_", protocols=["irc"])
    server = await make_server(app_services=[str(one.path), str(two.path)])
    found = {"protocol": "irc", "fields": {"nick": "bob"}, "userid": "@_one_bob:test.local"}
    r1, seen1 = await _fake_bridge(
        one, {"instances": [{"desc": "Libera", "network_id": "libera"}]}, [found, {"junk": 1}]
    )
    r2, _ = await _fake_bridge(two, {"instances": [{"desc": "OFTC"}]}, [])
    try:
        alice = await server.client("alice")
        token = alice.access_token
        status, body = await server.request("GET", f"{CLIENT}/thirdparty/protocols", token=token)
        assert status == 200, body
        irc = body["irc"]
        assert irc["user_fields"] == ["nick"] and irc["icon"] == "mxc://x/y"
        assert sorted(irc["instances"], key=lambda i: i["desc"]) == [
            {"desc": "Libera", "network_id": "libera", "instance_id": "one|libera"},
            {"desc": "OFTC"},
        ]

        # One protocol: the same, from the bridges' answers kept in memory.
        status, body = await server.request("GET", f"{CLIENT}/thirdparty/protocol/irc", token=token)
        assert (status, body) == (200, irc)
        assert seen1.count(("protocol", "irc")) == 1
        status, body = await server.request(
            "GET", f"{CLIENT}/thirdparty/protocol/xmpp", token=token
        )
        assert (status, body["errcode"]) == (404, "M_NOT_FOUND")

        # A user lookup reaches the bridges with the fields; malformed results are dropped.
        status, body = await server.request(
            "GET", f"{CLIENT}/thirdparty/user/irc?nick=bob", token=token
        )
        assert (status, body) == (200, [found])
        assert ("user", "irc", {"nick": "bob"}) in seen1

        status, body = await server.request("GET", f"{CLIENT}/thirdparty/user", token=token)
        assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    finally:
        await r1.cleanup()
        await r2.cleanup()
