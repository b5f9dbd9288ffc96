"""Helpers for the transaction and EDU federation tests: raw signed requests, stopping
and restarting a server's federation listener, and room membership stand-ins.

`remote_member` writes a remote user's membership into a room's current state, which is
all that the EDU and queue code reads (servers in a room, who shares a room with whom):
a quick stand-in for a join over federation in tests of the queue and the EDU handlers
themselves. test_federation_room_edus.py covers the same paths in a room really joined
through make_join/send_join.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from yarl import URL

from federation.request_auth import authorization_header
from homeserver.metrics import REGISTRY
from homeserver.sync.notifier import state_key_of
from tests.federation_ca import TestCA


async def signed_request(
    src,
    dst,
    ca: TestCA,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    sign_content: Any = None,
) -> tuple[int, Any]:
    """A request from `src` to `dst`'s federation listener, X-Matrix signed by `src`.

    `raw` sends those bytes as the body (e.g. not JSON); `sign_content` then names what
    the signature covers."""
    content = body if raw is None else sign_content
    header = authorization_header(
        src.hs.signing_key, src.server_name, dst.server_name, method, path, content
    )
    data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
    headers = {"Authorization": header}
    if data is not None:
        headers["Content-Type"] = "application/json"
    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    async with aiohttp.ClientSession() as http:
        async with http.request(
            method,
            URL(dst.federation_url.rstrip("/") + path, encoded=True),
            data=data,
            headers=headers,
            ssl=ctx,
            server_hostname=dst.server_name.split(":")[0],
        ) as resp:
            return resp.status, await resp.json(content_type=None)


def transaction(origin: str, pdus=(), edus=()) -> dict:
    body: dict[str, Any] = {
        "origin": origin,
        "origin_server_ts": int(time.time() * 1000),
        "pdus": list(pdus),
    }
    if edus:
        body["edus"] = list(edus)
    return body


def new_txn_id() -> str:
    return secrets.token_hex(8)


async def remote_member(server, room_id: str, user_id: str, membership: str = "join") -> None:
    """Writes `user_id`'s membership of `room_id` into `server`'s current state (a
    stand-in for a join over federation; see the module docstring). On the events stream
    and waking the user and the room, as a member event does: the server's caches of
    memberships and room state follow it."""
    async with server.hs.streams.write("events") as w:
        await w.conn.execute(
            "INSERT INTO current_state (room_id, type, state_key, event_id, membership)"
            " VALUES ($1, 'm.room.member', $2, $3, $4) ON CONFLICT (room_id, type, state_key)"
            " DO UPDATE SET membership = EXCLUDED.membership",
            room_id,
            user_id,
            f"$stand-in-{secrets.token_hex(8)}",
            membership,
        )
        w.wake(users=[user_id], rooms=[room_id, state_key_of(room_id)])


async def eventually(
    check: Callable[[], Awaitable[Any]], *, timeout: float = 20.0, interval: float = 0.05
) -> Any:
    """Polls `check` until it returns something truthy; bounded in time and count."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 1):
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(interval)
    raise AssertionError("condition not reached in time")


def federation_port(server) -> int:
    return int(server.server_name.rsplit(":", 1)[1])


async def stop_federation_listener(server) -> None:
    """The server stays up but stops answering federation (the peer is "down")."""
    runner = server.runners.pop()
    await runner.cleanup()


async def start_federation_listener(server) -> None:
    from federation.app import build_federation_app, federation_ssl_context

    runner = web.AppRunner(build_federation_app(server.hs), access_log=None)
    await runner.setup()
    site = web.TCPSite(
        runner,
        "127.0.0.1",
        federation_port(server),
        ssl_context=federation_ssl_context(server.hs),
        reuse_address=True,
    )
    await site.start()
    server.runners.append(runner)


def fast_retries(server, *, min_backoff_s=0.05, max_backoff_s=0.2, poll_interval_s=0.05):
    sender = server.hs.federation.sender
    sender.min_backoff_s = min_backoff_s
    sender.max_backoff_s = max_backoff_s
    sender.poll_interval_s = poll_interval_s
    sender.poke()


class RecordingInbound:
    """Stands in for the inbound PDU pipeline (another part of the work) on a receiving
    server: records what /send hands it and accepts everything."""

    def __init__(self):
        self.pdus: list[dict] = []
        self.origins: list[str] = []

    async def handle_pdus(self, origin: str, pdus: list[dict]) -> dict:
        self.origins.append(origin)
        self.pdus.extend(pdus)
        return {}


def served(method: str, route: str) -> float:
    """How many requests for `route` (a route template) the servers of this process
    answered so far, any status (the request counter every listener keeps)."""
    total = 0.0
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            labels = sample.labels
            if (
                sample.name == "matrix_http_requests_total"
                and labels.get("method") == method
                and labels.get("endpoint") == route
            ):
                total += sample.value
    return total
