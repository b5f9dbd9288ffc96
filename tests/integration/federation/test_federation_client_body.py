"""The federation client reads whole answers, however they are split on the wire, and
refuses answers above its size cap."""

from __future__ import annotations

import orjson
import pytest
from aiohttp import web

from federation import client as federation_client
from federation.client import FederationError
from tests.integration.federation.fake_remote import server_admitting, start_fake_federation_server

CHUNK = 16 * 1024


def _big_json(size: int) -> bytes:
    return orjson.dumps({"filler": "x" * size, "end": True})


async def _streamed(request: web.Request, body: bytes) -> web.StreamResponse:
    # Small writes with a drain between them: the body reaches the client in many
    # segments, as a large answer from a real server does.
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    for i in range(0, len(body), CHUNK):
        await resp.write(body[i : i + CHUNK])
    await resp.write_eof()
    return resp


async def test_large_answers_are_read_to_the_end(make_server, ca):
    bodies = {
        "big": _big_json(5 * 1024 * 1024),
        "huge": _big_json(federation_client.MAX_RESPONSE_BYTES + 1),
    }

    async def handler(request: web.Request) -> web.StreamResponse:
        return await _streamed(request, bodies[request.match_info["which"]])

    app = web.Application()
    app.router.add_get("/_matrix/federation/v1/test/{which}", handler)
    runner, remote = await start_fake_federation_server(ca, "big.test.local", app)
    try:
        server = await server_admitting(make_server, ca, "hs1.test.local", ["big.test.local"])
        client = server.hs.federation.client
        answer = await client.get_json(remote, "/_matrix/federation/v1/test/big")
        assert answer["end"] is True and len(answer["filler"]) == 5 * 1024 * 1024

        with pytest.raises(FederationError, match="too large"):
            await client.get_json(remote, "/_matrix/federation/v1/test/huge")
    finally:
        await runner.cleanup()
