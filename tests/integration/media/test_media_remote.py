"""Remote media from origins that answer as our own server never does: a Location part
and redirects (bounded, https only), the legacy endpoint for pre-v1.11 origins, oversized
files, and many clients asking for one file at once (fetched once)."""

from __future__ import annotations

import asyncio
import os
import time
from types import SimpleNamespace

import pytest
from aiohttp import web
from nio import MemoryDownloadResponse

from federation.media_fetcher import MAX_REDIRECTS
from tests.integration.federation.fake_remote import (
    multipart,
    server_admitting,
    start_fake_federation_server,
    start_site,
)
from tests.integration.media.helpers import stored_files, wait_for

MAX_UPLOAD = 100_000
MEDIA_ID = "remoteMedia01"


class FakeSite:
    """Answers each path with the handler a test set for it; records what was asked."""

    def __init__(self):
        self.handlers = {}
        self.seen: list[web.Request] = []

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(request)
        handler = self.handlers.get(request.path)
        if handler is None:
            return web.json_response({"errcode": "M_NOT_FOUND", "error": "none"}, status=404)
        return await handler(request)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._dispatch)
        return app

    def paths(self) -> list[str]:
        return [r.path for r in self.seen]


@pytest.fixture
async def net(make_server, ca):
    """An origin, a CDN (both TLS), a plain-HTTP site, and our server admitting the origin."""
    origin, cdn, plain = FakeSite(), FakeSite(), FakeSite()
    origin_runner, origin_name = await start_fake_federation_server(
        ca, "origin.test.local", origin.app()
    )
    cdn_runner, cdn_name = await start_fake_federation_server(ca, "cdn.test.local", cdn.app())
    plain_runner, plain_port = await start_site(plain.app())
    try:
        server = await server_admitting(
            make_server,
            ca,
            "hs1.test.local",
            ["origin.test.local"],
            resolve_only=["cdn.test.local", "plain.test.local"],
            media={"max_upload_size": MAX_UPLOAD},
        )
        client = await server.client()
        yield SimpleNamespace(
            server=server,
            client=client,
            origin=origin,
            origin_name=origin_name,
            cdn=cdn,
            cdn_base=f"https://{cdn_name}",
            plain=plain,
            plain_base=f"http://plain.test.local:{plain_port}",
            mxc=f"mxc://{origin_name}/{MEDIA_ID}",
        )
    finally:
        for runner in (origin_runner, cdn_runner, plain_runner):
            await runner.cleanup()


def _federation_path(media_id: str = MEDIA_ID) -> str:
    return f"/_matrix/federation/v1/media/download/{media_id}"


def _answer(parts) -> web.Response:
    body, content_type = multipart(parts)
    return web.Response(body=body, headers={"Content-Type": content_type})


def _location_answer(url: str):
    async def handler(_request):
        return _answer([({"Content-Type": "application/json"}, b"{}"), ({"Location": url}, b"")])

    return handler


def _redirect(to: str):
    async def handler(_request):
        raise web.HTTPFound(to)

    return handler


async def _download_error(net, mxc: str) -> tuple[int, str]:
    server_name, media_id = mxc[len("mxc://") :].split("/")
    status, body = await net.server.request(
        "GET",
        f"/_matrix/client/v1/media/download/{server_name}/{media_id}",
        token=net.client.access_token,
    )
    return status, body["errcode"]


async def _nothing_cached(net) -> None:
    assert stored_files(net.server) == []
    assert await net.server.db.fetchval("SELECT count(*) FROM remote_media") == 0


async def test_location_part_and_redirects_are_followed(net):
    payload = os.urandom(60_000)

    async def file(_request):
        return web.Response(
            body=payload,
            headers={
                "Content-Type": "image/png",
                "Content-Disposition": 'inline; filename="cat.png"',
            },
        )

    net.origin.handlers[_federation_path()] = _location_answer(f"{net.cdn_base}/start")
    net.cdn.handlers["/start"] = _redirect("/files/cat")
    net.cdn.handlers["/files/cat"] = file

    down = await net.client.download(net.mxc)
    assert isinstance(down, MemoryDownloadResponse), down
    assert down.body == payload
    assert (down.content_type, down.filename) == ("image/png", "cat.png")
    # The origin got a signed request; the CDN never sees our signature.
    assert net.origin.seen[0].headers["Authorization"].startswith("X-Matrix ")
    assert net.cdn.paths() == ["/start", "/files/cat"]
    assert all("Authorization" not in r.headers for r in net.cdn.seen)


async def test_redirects_are_bounded(net):
    net.origin.handlers[_federation_path()] = _location_answer(f"{net.cdn_base}/loop")
    net.cdn.handlers["/loop"] = _redirect("/loop")

    assert await _download_error(net, net.mxc) == (404, "M_NOT_FOUND")
    assert net.cdn.paths() == ["/loop"] * MAX_REDIRECTS
    await _nothing_cached(net)


async def test_a_location_without_tls_is_not_followed(net):
    net.origin.handlers[_federation_path()] = _location_answer(f"{net.plain_base}/file")
    net.plain.handlers["/file"] = _redirect("/never")

    assert await _download_error(net, net.mxc) == (404, "M_NOT_FOUND")
    assert net.plain.seen == []
    await _nothing_cached(net)


async def test_legacy_endpoint_only_when_the_origin_does_not_know_the_new_one(net):
    payload = os.urandom(30_000)
    legacy_path = f"/_matrix/media/v3/download/{net.origin_name}/{MEDIA_ID}"

    async def unrecognized(_request):
        return web.json_response({"errcode": "M_UNRECOGNIZED", "error": "?"}, status=404)

    async def legacy(_request):
        return web.Response(
            body=payload,
            headers={
                "Content-Type": "application/pdf",
                "Content-Disposition": "attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf",
            },
        )

    net.origin.handlers[_federation_path()] = unrecognized
    net.origin.handlers[legacy_path] = legacy
    down = await net.client.download(net.mxc)
    assert isinstance(down, MemoryDownloadResponse), down
    assert down.body == payload and down.filename == "résumé.pdf"
    assert net.origin.paths() == [_federation_path(), legacy_path]
    # The spec: a server falling back MUST set allow_remote=false.
    assert net.origin.seen[1].query["allow_remote"] == "false"

    # Any other error from the new endpoint (here: not found) means no fallback.
    other = "otherMedia02"
    net.origin.handlers[f"/_matrix/media/v3/download/{net.origin_name}/{other}"] = legacy
    before = len(net.origin.seen)
    assert await _download_error(net, f"mxc://{net.origin_name}/{other}") == (404, "M_NOT_FOUND")
    assert net.origin.paths()[before:] == [_federation_path(other)]


async def test_remote_files_over_the_size_limit_are_refused_and_not_kept(net):
    async def streamed_too_large(request):
        # No Content-Length anywhere: the limit can only be enforced while streaming.
        body, content_type = multipart(
            [
                ({"Content-Type": "application/json"}, b"{}"),
                ({"Content-Type": "application/octet-stream"}, os.urandom(MAX_UPLOAD + 5_000)),
            ]
        )
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        await resp.prepare(request)
        for i in range(0, len(body), 8192):
            await resp.write(body[i : i + 8192])
        await resp.write_eof()
        return resp

    net.origin.handlers[_federation_path()] = streamed_too_large
    assert await _download_error(net, net.mxc) == (502, "M_TOO_LARGE")
    await _nothing_cached(net)

    # Declared too large by a CDN: refused before reading the body.
    net.origin.handlers[_federation_path("declared")] = _location_answer(f"{net.cdn_base}/big")

    async def big(_request):
        return web.Response(body=os.urandom(MAX_UPLOAD + 1), content_type="video/mp4")

    net.cdn.handlers["/big"] = big
    mxc = f"mxc://{net.origin_name}/declared"
    assert await _download_error(net, mxc) == (502, "M_TOO_LARGE")
    await _nothing_cached(net)


async def test_concurrent_requests_for_one_remote_file_fetch_it_once(net):
    payload = os.urandom(40_000)
    gate = asyncio.Event()

    async def slow(_request):
        await gate.wait()
        return _answer(
            [
                ({"Content-Type": "application/json"}, b"{}"),
                ({"Content-Type": "application/zip"}, payload),
            ]
        )

    net.origin.handlers[_federation_path()] = slow
    clients = [net.client, *[await net.server.client() for _ in range(3)]]
    downloads = [asyncio.ensure_future(c.download(net.mxc)) for c in clients for _ in range(2)]
    key = (net.origin_name, MEDIA_ID)
    fetches = net.server.hs.media.remote_fetches
    try:
        # Every request is waiting on the one fetch before the origin answers.
        async def all_waiting():
            return fetches.waiting(key) == len(downloads)

        await wait_for(all_waiting)
    finally:
        gate.set()
    results = await asyncio.gather(*downloads)
    assert all(isinstance(r, MemoryDownloadResponse) and r.body == payload for r in results)
    assert net.origin.paths() == [_federation_path()]

    # Later requests are served from the cache.
    again = await clients[-1].download(net.mxc)
    assert again.body == payload and len(net.origin.seen) == 1
    assert len(stored_files(net.server)) == 1


async def test_quarantined_remote_media_is_never_fetched(net):
    net.origin.handlers[_federation_path()] = _location_answer(f"{net.cdn_base}/file")
    await net.server.make_admin(net.client.user_id)
    status, _ = await net.server.request(
        "POST",
        f"/_synapse/admin/v1/media/quarantine/{net.origin_name}/{MEDIA_ID}",
        token=net.client.access_token,
    )
    assert status == 200
    assert await _download_error(net, net.mxc) == (404, "M_NOT_FOUND")
    assert net.origin.seen == []


async def test_admin_purges_the_remote_media_cache(net):
    payloads = {MEDIA_ID: os.urandom(20_000), "quarantinedOne": os.urandom(10_000)}

    def serve(payload: bytes):
        async def handler(_request):
            return _answer(
                [
                    ({"Content-Type": "application/json"}, b"{}"),
                    ({"Content-Type": "application/octet-stream"}, payload),
                ]
            )

        return handler

    for media_id, payload in payloads.items():
        net.origin.handlers[_federation_path(media_id)] = serve(payload)
        down = await net.client.download(f"mxc://{net.origin_name}/{media_id}")
        assert down.body == payload
    await net.server.make_admin(net.client.user_id)
    token = net.client.access_token
    status, _ = await net.server.request(
        "POST",
        f"/_synapse/admin/v1/media/quarantine/{net.origin_name}/quarantinedOne",
        token=token,
    )
    assert status == 200
    assert len(stored_files(net.server)) == 2

    status, body = await net.server.request(
        "POST", "/_synapse/admin/v1/purge_media_cache", token=token
    )
    assert (status, body["errcode"]) == (400, "M_MISSING_PARAM")
    status, body = await net.server.request(
        "POST", "/_synapse/admin/v1/purge_media_cache?before_ts=1", token=token
    )
    assert (status, body) == (200, {"deleted": 0})  # nothing cached that long ago
    now = int(time.time() * 1000)
    status, body = await net.server.request(
        "POST", f"/_synapse/admin/v1/purge_media_cache?before_ts={now + 1000}", token=token
    )
    assert (status, body) == (200, {"deleted": 2})
    await _nothing_cached(net)

    # Fetched again on demand; the quarantine outlived the cache entry.
    seen = len(net.origin.seen)
    down = await net.client.download(net.mxc)
    assert down.body == payloads[MEDIA_ID] and len(net.origin.seen) == seen + 1
    assert await _download_error(net, f"mxc://{net.origin_name}/quarantinedOne") == (
        404,
        "M_NOT_FOUND",
    )
    assert len(net.origin.seen) == seen + 1
