"""A minimal Matrix client over raw JSON (aiohttp + orjson).

Only the public Client-Server API, so the same code measures any homeserver.
It is deliberately thin: matrix-nio does far more per request (validation,
stores, crypto hooks) and would make the load generator the bottleneck.
"""

from __future__ import annotations

import itertools
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import quote

import aiohttp
import orjson

PREFIX = "/_matrix/client/v3"

_txn_counter = itertools.count()


class MatrixHTTPError(Exception):
    def __init__(self, method: str, path: str, status: int, body: object):
        errcode = body.get("errcode") if isinstance(body, dict) else None
        super().__init__(f"{method} {path.split('?')[0]} -> {status} {errcode or ''}".strip())
        self.status = status
        self.body = body
        self.errcode = errcode


@dataclass
class Response:
    status: int
    body: object
    nbytes: int
    seconds: float


def new_session(ssl_context: ssl.SSLContext | None = None) -> aiohttp.ClientSession:
    # limit=0: the idle long-poll scenarios hold thousands of connections at once.
    # Accept-Encoding identity: /sync byte counts compare uncompressed bodies.
    # ssl_context: the CA of a TLS front (bench/scale.py's nginx); None: system defaults.
    connector = aiohttp.TCPConnector(
        limit=0, force_close=False, enable_cleanup_closed=True, ssl=ssl_context or True
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
        headers={"Accept-Encoding": "identity"},
    )


async def request(
    session: aiohttp.ClientSession,
    base_url: str,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: object = None,
    params: dict | None = None,
    ok: tuple[int, ...] = (200,),
) -> Response:
    """One request; raises MatrixHTTPError when the status is not in `ok`."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = orjson.dumps(body) if body is not None else None
    if data is not None:
        headers["Content-Type"] = "application/json"
    started = time.perf_counter()
    async with session.request(
        method, base_url + path, data=data, params=params, headers=headers
    ) as resp:
        raw = await resp.read()
    seconds = time.perf_counter() - started
    try:
        parsed = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        parsed = None
    if resp.status not in ok:
        raise MatrixHTTPError(method, path, resp.status, parsed)
    return Response(resp.status, parsed, len(raw), seconds)


def room_path(room_id: str, *rest: str) -> str:
    parts = [quote(room_id, safe="")] + [quote(p, safe="") for p in rest]
    return f"{PREFIX}/rooms/" + "/".join(parts)


@dataclass
class User:
    """A logged-in account: the pieces every request needs."""

    session: aiohttp.ClientSession
    base_url: str
    user_id: str
    access_token: str
    device_id: str | None = None
    since: str | None = field(default=None, repr=False)

    async def call(self, method: str, path: str, **kwargs) -> Response:
        return await request(
            self.session, self.base_url, method, path, token=self.access_token, **kwargs
        )

    async def create_room(self, *, name: str | None = None, public: bool = True) -> str:
        body: dict = {"preset": "public_chat" if public else "private_chat"}
        if name:
            body["name"] = name
        resp = await self.call("POST", f"{PREFIX}/createRoom", body=body)
        return resp.body["room_id"]

    async def join(self, room_id: str) -> Response:
        return await self.call("POST", f"{PREFIX}/join/{quote(room_id, safe='')}", body={})

    async def send_text(self, room_id: str, text: str, **extra) -> Response:
        txn = f"b{time.monotonic_ns()}.{next(_txn_counter)}"
        content = {"msgtype": "m.text", "body": text, **extra}
        return await self.call(
            "PUT", room_path(room_id, "send", "m.room.message", txn), body=content
        )

    async def sync(
        self,
        *,
        since: str | None = None,
        timeout_ms: int = 0,
        filter_json: str | None = None,
        set_presence: str | None = None,
    ) -> Response:
        params: dict = {"timeout": str(timeout_ms)}
        if since:
            params["since"] = since
        if filter_json:
            params["filter"] = filter_json
        if set_presence:
            params["set_presence"] = set_presence
        return await self.call("GET", f"{PREFIX}/sync", params=params)

    async def messages(
        self, room_id: str, *, start: str | None, limit: int, direction: str = "b"
    ) -> Response:
        params = {"dir": direction, "limit": str(limit)}
        if start:
            params["from"] = start
        return await self.call("GET", room_path(room_id, "messages"), params=params)


async def register(
    session: aiohttp.ClientSession, base_url: str, localpart: str, password: str
) -> User:
    """Registers with the m.login.dummy flow (open registration, no verification)."""
    body: dict = {
        "username": localpart,
        "password": password,
        "initial_device_display_name": "bench",
    }
    path = f"{PREFIX}/register"
    first = await request(session, base_url, "POST", path, body=body, ok=(200, 401))
    if first.status == 401:
        # User-interactive auth: complete the dummy stage inside the offered session.
        body["auth"] = {"type": "m.login.dummy", "session": first.body.get("session")}
        first = await request(session, base_url, "POST", path, body=body)
    reply = first.body
    return User(session, base_url, reply["user_id"], reply["access_token"], reply.get("device_id"))


async def login(
    session: aiohttp.ClientSession, base_url: str, localpart: str, password: str
) -> User:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": localpart},
        "password": password,
    }
    reply = (await request(session, base_url, "POST", f"{PREFIX}/login", body=body)).body
    return User(session, base_url, reply["user_id"], reply["access_token"], reply.get("device_id"))


def timeline_events(sync_body: dict, room_id: str) -> list[dict]:
    """The timeline events of one joined room in a /sync response (empty if absent)."""
    room = sync_body.get("rooms", {}).get("join", {}).get(room_id)
    if not room:
        return []
    return room.get("timeline", {}).get("events", [])
