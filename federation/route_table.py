"""Declaring federation routes: X-Matrix authenticated unless declared `public=True`.

Forgetting the marker means authenticated. A handler of an authenticated route runs only
for a correctly signed request from a server the allow-list admits, and is called as
`fn(request, origin, content)`: the origin the signature proves, and the JSON body the
signature covers (None when there is none). A public route's handler is `fn(request)`,
and its declaration says in a comment why the spec leaves it unauthenticated (its
operation in data/api/server-server/ has no `security`).

Declared as client routes are (`@routes.get(path)`), but `path` is always the whole path:
federation paths carry their own prefixes (/_matrix/federation/v1, v2, /_matrix/key/v2).
tests/integration/federation/test_federation_route_auth.py lists the public routes and sends an
unsigned request to every route of the mounted federation app.
"""

from __future__ import annotations

import functools

from aiohttp import web

from federation.request_auth import OutsidePdus, authenticate_request, whole_body
from homeserver.http.routes import Handler, Route


class FederationRouteTable:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def route(
        self, method: str, path: str, *, public: bool = False, pdus: OutsidePdus = whole_body
    ):
        """`pdus`: where the body carries PDUs, the part outside them (see request_auth):
        only that part is refused for U+0000."""

        def decorate(fn: Handler) -> Handler:
            handler = fn if public else _authenticated(fn, pdus)
            self.routes.append(Route(method, (path,), handler))
            return fn

        return decorate

    def get(self, path: str, *, public: bool = False, pdus: OutsidePdus = whole_body):
        return self.route("GET", path, public=public, pdus=pdus)

    def post(self, path: str, *, public: bool = False, pdus: OutsidePdus = whole_body):
        return self.route("POST", path, public=public, pdus=pdus)

    def put(self, path: str, *, public: bool = False, pdus: OutsidePdus = whole_body):
        return self.route("PUT", path, public=public, pdus=pdus)

    def mount(self, app: web.Application) -> None:
        for r in self.routes:
            for p in r.paths:
                app.router.add_route(r.method, p, r.handler)


def _authenticated(fn: Handler, outside_pdus: OutsidePdus) -> Handler:
    @functools.wraps(fn)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        # Allow-list, destination, signature, then U+0000: see authenticate_request.
        origin, content = await authenticate_request(request, outside_pdus)
        return await fn(request, origin, content)

    return wrapper
