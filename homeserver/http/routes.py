"""Declaring Client-Server API routes once, served under each API version prefix.

Each package serves its handlers from one `routes` module (`routes.py`, or a `routes/`
package whose `__init__` joins its modules' tables) with a `RouteTable`; homeserver.app
mounts them all, and tests/unit/test_routes_layout.py keeps tables out of other modules.
A handler declared with `auth=True` receives the authenticated Requester as a second
argument; `ratelimit=True` charges the requester's bucket.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from homeserver.http.auth import (
    Requester,
    authenticate,
    refuse_if_expired,
    refuse_if_guest,
    refuse_if_suspended,
    shadow_ban_response,
)
from homeserver.http.context import REQUESTER_KEY, get_hs

CLIENT_VERSIONS = ("r0", "v3")

Handler = Callable[..., Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    paths: tuple[str, ...]
    handler: Handler


async def authenticated(request: web.Request) -> Requester:
    """The requester of a request that carries an access token, checked as every `auth`
    route checks it (suspension, expiry, what guests may do); for handlers declared `auth=False` whose
    authentication is optional (POST /account/password: a password reset has none)."""
    hs = get_hs(request)
    requester = await authenticate(request, hs.db)
    refuse_if_suspended(request, requester)
    refuse_if_expired(request, requester)
    refuse_if_guest(request, requester)
    request[REQUESTER_KEY] = requester
    # In memory only: written in batches (homeserver/housekeeping/last_seen.py).
    hs.housekeeping.device_activity.seen(requester.user_id, requester.device_id, request.remote)
    return requester


class RouteTable:
    def __init__(self):
        self.routes: list[Route] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        auth: bool = True,
        ratelimit: bool = False,
        versions: tuple[str, ...] = CLIENT_VERSIONS,
        prefix: str = "/_matrix/client",
        raw_path: bool = False,
    ):
        """`path` follows the version prefix unless raw_path, e.g. "/rooms/{room_id}/state"."""
        paths: tuple[str, ...]
        if raw_path:
            paths = (path,)
        else:
            paths = tuple(f"{prefix}/{v}{path}" for v in versions)

        def decorate(fn: Handler) -> Handler:
            @functools.wraps(fn)
            async def wrapper(request: web.Request) -> web.StreamResponse:
                if not auth:
                    return await fn(request)
                hs = get_hs(request)
                requester = await authenticated(request)
                fake = shadow_ban_response(request, requester)
                if fake is not None:
                    return fake
                if ratelimit and hs.appservices.rate_limited(requester):
                    hs.user_limiter.check(requester.user_id, override=requester.ratelimit)
                return await fn(request, requester)

            self.routes.append(Route(method, paths, wrapper))
            return fn

        return decorate

    def get(self, path: str, **kw):
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw):
        return self.route("POST", path, **kw)

    def put(self, path: str, **kw):
        return self.route("PUT", path, **kw)

    def delete(self, path: str, **kw):
        return self.route("DELETE", path, **kw)

    def mount(self, app: web.Application) -> None:
        for r in self.routes:
            for p in r.paths:
                app.router.add_route(r.method, p, r.handler)
