"""/_matrix/key/v2/server (our keys) and the notary /_matrix/key/v2/query.

Neither is authenticated (the spec has no signature on them): a server must be able to
fetch keys before it can check any signature.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from federation.route_table import FederationRouteTable
from federation.server_keys import now_ms
from homeserver.http.context import get_hs
from homeserver.http.errors import bad_json
from homeserver.http.request import json_body, json_response, query_int

routes = FederationRouteTable()

# A notary query can make us fetch from each server named in it: bound the fan-out.
MAX_SERVERS_PER_QUERY = 50


# Public (keys_server.yaml has no security): a server needs our keys before it can
# check any signature of ours.
@routes.get("/_matrix/key/v2/server", public=True)
# The key-ID form was removed from the spec in v1.6, but servers (Synapse) still serve it
# and older ones (SyTest's federation client) still fetch by key ID: the one response
# holds every key, so the ID selects nothing.
@routes.get("/_matrix/key/v2/server/{key_id}", public=True)
async def server_keys(request: web.Request) -> web.Response:
    return json_response(await get_hs(request).federation.server_keys.server_response())


# Public (keys_query.yaml has no security): a notary serves servers that cannot yet
# verify anyone's signature. It only fetches keys of admitted servers (_notary_answer).
@routes.post("/_matrix/key/v2/query", public=True)
async def query_keys(request: web.Request) -> web.Response:
    body = await json_body(request)
    wanted = body.get("server_keys")
    if not isinstance(wanted, dict) or not all(
        isinstance(criteria, dict) and all(isinstance(c, dict) for c in criteria.values())
        for criteria in wanted.values()
    ):
        raise bad_json("server_keys must map server names to key criteria")
    if len(wanted) > MAX_SERVERS_PER_QUERY:
        raise bad_json(f"at most {MAX_SERVERS_PER_QUERY} servers per query")
    results: list[dict] = []
    for server_name, criteria in wanted.items():
        min_ts = max(
            (
                c["minimum_valid_until_ts"]
                for c in criteria.values()
                if isinstance(c.get("minimum_valid_until_ts"), int)
            ),
            default=0,
        )
        results.extend(await _notary_answer(request, server_name, list(criteria), min_ts))
    return json_response({"server_keys": results})


# Public, as POST /_matrix/key/v2/query above.
@routes.get("/_matrix/key/v2/query/{server_name}", public=True)
# The key-ID form, removed from the spec in v1.6 and still served by Synapse: the responses
# that hold that key.
@routes.get("/_matrix/key/v2/query/{server_name}/{key_id}", public=True)
async def query_server_keys(request: web.Request) -> web.Response:
    min_ts = query_int(request, "minimum_valid_until_ts", 0)
    key_id = request.match_info.get("key_id")
    answer = await _notary_answer(
        request, request.match_info["server_name"], [key_id] if key_id else [], min_ts
    )
    return json_response({"server_keys": answer})


async def _notary_answer(
    request: web.Request, server_name: str, key_ids: list[str], min_ts: int
) -> list[dict[str, Any]]:
    """The signed key responses we hold for a server, fetched first if ours are stale,
    each countersigned by us. Servers outside the allow-list get nothing."""
    fed = get_hs(request).federation
    if server_name == fed.server_keys.server_name:
        return [await fed.server_keys.server_response()]
    if not fed.policy.is_allowed(server_name):
        return []
    min_ts = min_ts or now_ms()  # the spec's default: valid now
    responses = await _cached(fed, server_name, key_ids)
    if not any(valid_until >= min_ts for valid_until, _ in responses):
        await fed.keys.fetch(server_name, key_ids[0] if key_ids else "")
        responses = await _cached(fed, server_name, key_ids)
    valid = [r for valid_until, r in responses if valid_until >= min_ts]
    # Nothing valid that long (the spec's SHOULD): the most recent we hold, expired or not,
    # as Synapse answers; a spurious answer of the origin never displaces a key it held
    # (SyTest 01keys).
    chosen = valid or [r for _, r in responses[:1]]
    return [fed.server_keys.sign(r) for r in chosen]


async def _cached(fed, server_name: str, key_ids: list[str]) -> list[tuple[int, dict]]:
    """(valid_until_ts, response) of the cached responses holding every key of `key_ids`,
    the most recent first."""
    found = []
    for text, valid_until in await fed.store.remote_responses(server_name):
        response = orjson.loads(text)
        published = {**response.get("verify_keys", {}), **response.get("old_verify_keys", {})}
        if all(k in published for k in key_ids):
            found.append((valid_until, response))
    found.sort(key=lambda item: -item[0])
    return found
