"""URL previews: off by default; when on, loopback and private addresses are refused."""

from __future__ import annotations

from aiohttp import web

PREVIEW = "/_matrix/client/v1/media/preview_url"

PAGE = b"""<html><head><title>Fallback title</title>
<meta property="og:title" content="Sovereign news">
<meta property="og:image" content="/logo.png">
<meta name="description" content="All of it, on premises.">
</head><body>hello</body></html>"""


async def _site():
    """A small web site on loopback (the only network the tests have)."""

    async def page(_request):
        return web.Response(body=PAGE, content_type="text/html")

    async def hop(_request):
        raise web.HTTPFound("/page")

    app = web.Application()
    app.router.add_get("/page", page)
    app.router.add_get("/redirect", hop)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]


async def test_previews_are_off_by_default(server):
    client = await server.client()
    status, body = await server.request(
        "GET", f"{PREVIEW}?url=https://example.org/", token=client.access_token
    )
    assert (status, body["errcode"]) == (404, "M_UNRECOGNIZED")


async def test_previews_refuse_loopback_and_private_addresses(make_server):
    server = await make_server(media={"url_preview_enabled": True})
    client = await server.client()
    runner, port = await _site()
    try:
        for url in (
            f"http://127.0.0.1:{port}/page",
            f"http://localhost:{port}/page",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
        ):
            status, body = await server.request(
                "GET", f"{PREVIEW}?url={url}", token=client.access_token
            )
            assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), url
        status, body = await server.request(
            "GET", f"{PREVIEW}?url=file:///etc/passwd", token=client.access_token
        )
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    finally:
        await runner.cleanup()


async def test_preview_of_an_allowed_network(make_server):
    server = await make_server(
        media={"url_preview_enabled": True, "url_preview_allowed_networks": ["127.0.0.1/32"]}
    )
    client = await server.client()
    runner, port = await _site()
    try:
        status, body = await server.request(
            "GET", f"{PREVIEW}?url=http://127.0.0.1:{port}/redirect", token=client.access_token
        )
        assert status == 200, body
        assert body["og:title"] == "Sovereign news"
        assert body["og:description"] == "All of it, on premises."
        assert "og:image" not in body  # never a third-party URL for clients to fetch
    finally:
        await runner.cleanup()
