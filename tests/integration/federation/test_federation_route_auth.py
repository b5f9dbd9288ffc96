"""Every federation route is X-Matrix authenticated unless it is listed in PUBLIC.

Walks the route table of the federation app a running server mounted, fills each path's
parameters with placeholders, and sends every route first an unsigned request, then one
whose X-Matrix header names an admitted server and its real key but carries a signature
made with another key. Each route outside PUBLIC must answer both with 401 M_UNAUTHORIZED;
each route in PUBLIC must answer without asking for a signature. Adding a public route
means adding it here, next to the spec's reason.
"""

from __future__ import annotations

import re
import ssl
from urllib.parse import quote

import aiohttp
import orjson
from signedjson.key import generate_signing_key
from yarl import URL

from federation.request_auth import authorization_header
from tests.federation_ca import TestCA, start_federating_server

# (method, route template): the operations whose OpenAPI in the spec's
# data/api/server-server/ has no `security`.
PUBLIC = {
    # keys_server.yaml, keys_query.yaml: keys come before any signature can be checked.
    ("GET", "/_matrix/key/v2/server"),
    ("POST", "/_matrix/key/v2/query"),
    ("GET", "/_matrix/key/v2/query/{server_name}"),
    ("GET", "/_matrix/key/v2/server/{key_id}"),
    ("GET", "/_matrix/key/v2/query/{server_name}/{key_id}"),
    # version.yaml
    ("GET", "/_matrix/federation/v1/version"),
    # wellknown.yaml: discovery, before a request can be addressed to us.
    ("GET", "/.well-known/matrix/server"),
    # openid.yaml: called by third-party services; the access_token is the credential.
    ("GET", "/_matrix/federation/v1/openid/userinfo"),
    # third_party_invite.yaml's onbind: called by identity servers; each invite's signed
    # block is the credential (POST too: what identity servers send).
    ("PUT", "/_matrix/federation/v1/3pid/onbind"),
    ("POST", "/_matrix/federation/v1/3pid/onbind"),
}

# Fills any path parameter: authentication must refuse before the handler reads it.
PLACEHOLDER = "!placeholder:example.org"


def mounted_federation_routes(server) -> list[tuple[str, str, str]]:
    """(method, template, concrete path) of every route on the server's federation app."""
    port = URL(server.federation_url).port
    (runner,) = [r for r in server.runners if any(a[1] == port for a in r.addresses)]
    found = []
    for resource in runner.app.router.resources():
        template = resource.canonical
        params = {name: PLACEHOLDER for name in re.findall(r"{(\w+)}", template)}
        path = template
        for name, value in params.items():
            path = path.replace("{" + name + "}", quote(value, safe=""))
        for route in resource:
            found.append((route.method, template, path))
    return found


async def send(server, ca: TestCA, method: str, path: str, headers: dict) -> tuple[int, dict]:
    ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    body = orjson.dumps({}) if method in ("POST", "PUT") else None
    async with aiohttp.ClientSession() as http:
        async with http.request(
            method,
            URL(server.federation_url.rstrip("/") + path, encoded=True),
            data=body,
            headers={**headers, "Content-Type": "application/json"},
            ssl=ctx,
            server_hostname=server.server_name.split(":")[0],
        ) as resp:
            try:
                answer = await resp.json(content_type=None)
            except ValueError:
                answer = {}
            return resp.status, answer if isinstance(answer, dict) else {}


async def test_every_route_but_the_public_ones_refuses_unsigned_requests(make_server, ca):
    hs1 = await start_federating_server(make_server, ca, "hs1.test.local", ["hs2.test.local"])
    hs2 = await start_federating_server(make_server, ca, "hs2.test.local", ["hs1.test.local"])
    routes = mounted_federation_routes(hs1)
    templates = {(method, template) for method, template, _ in routes}
    assert PUBLIC <= templates, PUBLIC - templates  # a stale entry is a mistake too
    authenticated = [r for r in routes if (r[0], r[1]) not in PUBLIC]
    # Not a vacuous walk: transactions, joins, media, user keys, ... are all there.
    assert len(authenticated) >= 23, authenticated

    forger = generate_signing_key(hs2.hs.federation.server_keys.key_id.split(":", 1)[1])
    wrong_answers = []
    for method, template, path in routes:
        forged = authorization_header(
            forger,
            hs2.server_name,
            hs1.server_name,
            method,
            path,
            {} if method in ("POST", "PUT") else None,
        )
        for label, headers in (("unsigned", {}), ("forged", {"Authorization": forged})):
            status, body = await send(hs1, ca, method, path, headers)
            refused = status == 401 and body.get("errcode") == "M_UNAUTHORIZED"
            public = (method, template) in PUBLIC
            if public and (refused or status >= 500):
                wrong_answers.append((label, method, template, status, body))
            if not public and not refused:
                wrong_answers.append((label, method, template, status, body))
    assert not wrong_answers, wrong_answers


async def test_an_origin_that_is_no_server_name_is_a_bad_request(make_server, ca):
    """SyTest 50federation/02server-names: "localhost:http" (a non-numeric port) is
    refused as malformed (400), not judged by the allow-list as a server (403)."""
    hs1 = await start_federating_server(make_server, ca, "hs1.test.local", ["hs2.test.local"])
    path = "/_matrix/federation/v1/query/profile?user_id=%40a%3Ahs1.test.local"
    header = authorization_header(
        generate_signing_key("1"), "localhost:http", hs1.server_name, "GET", path
    )
    status, body = await send(hs1, ca, "GET", path, {"Authorization": header})
    assert (status, body.get("errcode")) == (400, "M_UNAUTHORIZED")
