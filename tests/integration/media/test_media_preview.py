"""URL previews: off by default; when on, loopback and private addresses are refused, the
page's image is stored here, and answers are cached."""

from __future__ import annotations

import asyncio
import os
import ssl
import time
from collections import Counter
from urllib.parse import quote

from aiohttp import web
from nio import DownloadError, MemoryDownloadResponse

from tests.federation_ca import TestCA
from tests.integration.media.helpers import png_bytes, split_mxc, stored_files, wait_for
from tests.schema import assert_matches_schema

PREVIEW = "/_matrix/client/v1/media/preview_url"

LOGO = png_bytes(64, 48)

PAGE = b"""<html><head><title>Fallback title</title>
<meta property="og:title" content="Sovereign news">
<meta property="og:image" content="/logo.png">
<meta name="description" content="All of it, on premises.">
</head><body>hello</body></html>"""


class Site:
    """A small web site on loopback (the only network the tests have), counting requests."""

    def __init__(self, host: str = "127.0.0.1"):
        self.host = host
        self.hits: Counter = Counter()
        self.pages: dict[str, tuple[bytes, str]] = {
            "/page": (PAGE, "text/html"),
            "/logo.png": (LOGO, "image/png"),
        }
        self.gate: asyncio.Event | None = None
        self.runner = None
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] += 1
        if request.path == "/redirect":
            raise web.HTTPFound("/page")
        if request.path == "/slow" and self.gate is not None:
            await self.gate.wait()
            return web.Response(body=PAGE, content_type="text/html")
        if request.path not in self.pages:
            raise web.HTTPNotFound()
        body, content_type = self.pages[request.path]
        return web.Response(body=body, content_type=content_type)

    async def __aenter__(self) -> Site:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc) -> None:
        await self.runner.cleanup()


def _page_with_image(src: str) -> tuple[bytes, str]:
    meta = f'<meta property="og:title" content="T"><meta property="og:image" content="{src}">'
    return f"<html><head>{meta}</head></html>".encode(), "text/html"


async def _previewer(make_server, **media):
    server = await make_server(
        media={
            "url_preview_enabled": True,
            "url_preview_allowed_networks": ["127.0.0.1/32"],
            **media,
        }
    )
    client = await server.client()
    return server, client


async def _preview(server, client, url: str, ts: int | None = None) -> dict:
    query = f"url={quote(url, safe='')}" + (f"&ts={ts}" if ts is not None else "")
    status, body = await server.request("GET", f"{PREVIEW}?{query}", token=client.access_token)
    assert status == 200, body
    return body


async def test_previews_are_off_by_default(server):
    client = await server.client()
    status, body = await server.request(
        "GET", f"{PREVIEW}?url=https://example.org/", token=client.access_token
    )
    assert (status, body["errcode"]) == (404, "M_UNRECOGNIZED")


async def test_previews_refuse_loopback_and_private_addresses(make_server):
    server = await make_server(media={"url_preview_enabled": True})
    client = await server.client()
    async with Site() as site:
        for url in (
            site.url("/page"),
            f"http://localhost:{site.port}/page",
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
        assert site.hits == {}


async def test_preview_image_is_stored_as_server_media(make_server):
    server, client = await _previewer(make_server)
    async with Site() as site:
        body = await _preview(server, client, site.url("/redirect"))
    assert_matches_schema("authed-content-repo.yaml", "/media/preview_url", "get", 200, body)
    assert body["og:title"] == "Sovereign news"
    assert body["og:description"] == "All of it, on premises."
    image_server, image_id = split_mxc(body["og:image"])
    assert image_server == server.server_name  # our copy, never the site's URL
    assert (body["og:image:width"], body["og:image:height"]) == (64, 48)
    assert body["og:image:type"] == "image/png"
    assert body["matrix:image:size"] == len(LOGO)

    down = await client.download(body["og:image"])
    assert isinstance(down, MemoryDownloadResponse) and down.body == LOGO
    owner = await server.db.fetchval(
        "SELECT user_id FROM local_media WHERE media_id = $1", image_id
    )
    assert owner == server.server_name
    # The server's own files are nobody's usage.
    await server.make_admin(client.user_id)
    status, usage = await server.request(
        "GET", "/_synapse/admin/v1/statistics/users/media", token=client.access_token
    )
    assert (status, usage["total"], usage["users"]) == (200, 0, [])


async def test_previews_are_cached(make_server):
    server, client = await _previewer(make_server)
    async with Site() as site:
        first = await _preview(server, client, site.url("/page"))
        again = await _preview(server, client, site.url("/page"))
        # A client asking for an older version gets what is kept (the spec allows newer).
        older = await _preview(server, client, site.url("/page"), ts=1)
        assert first == again == older
        assert (site.hits["/page"], site.hits["/logo.png"]) == (1, 1)

        # Once the cached answer has expired, the page is fetched again and the old
        # image copy is replaced.
        await server.db.execute("UPDATE media_url_previews SET expires_ts = 1")
        fresh = await _preview(server, client, site.url("/page"))
        assert (site.hits["/page"], site.hits["/logo.png"]) == (2, 2)
    assert fresh["og:image"] != first["og:image"]
    down = await client.download(first["og:image"])
    assert isinstance(down, DownloadError) and down.status_code == "M_NOT_FOUND"
    assert await server.db.fetchval("SELECT count(*) FROM media_url_previews") == 1

    # Expired previews are reaped (after a grace period) with their images.
    await server.db.execute("UPDATE media_url_previews SET expires_ts = 1")
    await server.hs.media.reap_expired(int(time.time() * 1000))
    assert await server.db.fetchval("SELECT count(*) FROM media_url_previews") == 0
    down = await client.download(fresh["og:image"])
    assert isinstance(down, DownloadError) and down.status_code == "M_NOT_FOUND"


async def test_preview_images_are_guarded_and_capped(make_server):
    server, client = await _previewer(make_server, url_preview_max_image_size=10_000)
    async with Site() as site, Site("127.0.0.2") as elsewhere:
        elsewhere.pages["/logo.png"] = (LOGO, "image/png")
        site.pages["/outside"] = _page_with_image(elsewhere.url("/logo.png"))
        site.pages["/metadata"] = _page_with_image("http://169.254.169.254/latest/x.png")
        site.pages["/huge"] = _page_with_image("/huge.png")
        site.pages["/huge.png"] = (os.urandom(10_001), "image/png")
        site.pages["/fake"] = _page_with_image("/fake.png")
        site.pages["/fake.png"] = (b"<html>not an image</html>", "image/png")
        site.pages["/svg"] = _page_with_image("/x.svg")
        site.pages["/x.svg"] = (b'<svg xmlns="http://www.w3.org/2000/svg"/>', "image/svg+xml")

        for path in ("/outside", "/metadata", "/huge", "/fake", "/svg"):
            body = await _preview(server, client, site.url(path))
            # The page is previewed; its image is left out, never passed on as a URL.
            assert body["og:title"] == "T", path
            assert not any(k.startswith(("og:image", "matrix:image")) for k in body), path
        # 127.0.0.2 is loopback outside the allowed network: never contacted.
        assert elsewhere.hits == {}
    assert await server.db.fetchval("SELECT count(*) FROM local_media") == 0
    assert stored_files(server) == []


async def test_an_image_url_is_its_own_preview(make_server):
    server, client = await _previewer(make_server)
    async with Site() as site:
        body = await _preview(server, client, site.url("/logo.png"))
    assert (body["og:image:width"], body["og:image:height"]) == (64, 48)
    down = await client.download(body["og:image"])
    assert down.body == LOGO


async def test_concurrent_previews_of_one_url_fetch_it_once(make_server):
    server, client = await _previewer(make_server)
    async with Site() as site:
        site.gate = asyncio.Event()
        url = site.url("/slow")
        requests = [asyncio.ensure_future(_preview(server, client, url)) for _ in range(4)]
        try:

            async def all_waiting():
                return server.hs.media.previews._fetches.waiting(url) == len(requests)

            await wait_for(all_waiting)
        finally:
            site.gate.set()
        answers = await asyncio.gather(*requests)
        assert all(a == answers[0] for a in answers)
        assert site.hits["/slow"] == 1 and site.hits["/logo.png"] == 1


async def test_a_url_that_is_not_html_previews_as_its_type(make_server):
    # Regression: the answer for a non-HTML page was a bare dict where (og, image) was
    # expected, so its two keys were unpacked as the answer and the image ID (found by mypy).
    server, client = await _previewer(make_server)
    async with Site() as site:
        site.pages["/notes.txt"] = (b"plain words", "text/plain")
        url = site.url("/notes.txt")
        body = await _preview(server, client, url)
    assert body == {"og:url": url, "og:type": "text/plain"}


async def test_https_site_verified_against_configured_ca(make_server, tmp_path):
    """An intranet site behind a private CA's certificate: previewed when the operator
    names that CA (media.url_preview_ca_bundle), refused without it."""

    ca = TestCA(tmp_path / "ca", "Intranet CA")
    cert, key = ca.issue("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    app = web.Application()
    app.router.add_get("/page", lambda r: web.Response(body=PAGE, content_type="text/html"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"https://127.0.0.1:{port}/page"
    try:
        server, client = await _previewer(make_server, url_preview_ca_bundle=str(ca.ca_path))
        body = await _preview(server, client, url)
        assert body["og:title"] == "Sovereign news"

        untrusting, other = await _previewer(make_server)
        status, body = await untrusting.request(
            "GET", f"{PREVIEW}?url={quote(url, safe='')}", token=other.access_token
        )
        assert status == 502 and body["errcode"] == "M_UNKNOWN", body
    finally:
        await runner.cleanup()
