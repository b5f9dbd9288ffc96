"""An appservice behind https with a private CA's certificate is reached when the
operator names that CA (app_services_ca_bundle), as SyTest's appservices are."""

from __future__ import annotations

import ssl

from aiohttp import web

from tests.federation_ca import TestCA
from tests.integration.appservice.helpers import free_port, write_registration


async def test_https_appservice_verified_against_configured_ca(make_server, tmp_path):
    ca = TestCA(tmp_path / "ca", "Appservice Test CA")
    cert, key = ca.issue("127.0.0.1")
    port = free_port()
    reg = write_registration(tmp_path, url=f"https://127.0.0.1:{port}")
    pings: list[dict] = []

    async def ping(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == f"Bearer {reg.hs_token}"
        pings.append(await request.json())
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/_matrix/app/v1/ping", ping)
    runner = web.AppRunner(app)
    await runner.setup()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    try:
        server = await make_server(
            app_services=[str(reg.path)], app_services_ca_bundle=str(ca.ca_path)
        )
        status, body = await server.request(
            "POST",
            f"/_matrix/client/v1/appservice/{reg.id}/ping",
            json={"transaction_id": "t1"},
            token=reg.as_token,
        )
        assert status == 200, body
        assert pings == [{"transaction_id": "t1"}]
    finally:
        await runner.cleanup()


async def test_https_appservice_with_unknown_ca_is_not_reached(make_server, tmp_path):
    ca = TestCA(tmp_path / "ca", "Appservice Test CA")
    cert, key = ca.issue("127.0.0.1")
    port = free_port()
    reg = write_registration(tmp_path, url=f"https://127.0.0.1:{port}")
    app = web.Application()
    app.router.add_post("/_matrix/app/v1/ping", lambda r: web.json_response({}))
    runner = web.AppRunner(app)
    await runner.setup()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    try:
        server = await make_server(app_services=[str(reg.path)])  # system trust store
        status, body = await server.request(
            "POST", f"/_matrix/client/v1/appservice/{reg.id}/ping", json={}, token=reg.as_token
        )
        assert status == 502 and body["errcode"] == "M_CONNECTION_FAILED", body
    finally:
        await runner.cleanup()
