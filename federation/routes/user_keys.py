"""A local user's devices and keys for remote servers: GET /user/devices/{userId},
POST /user/keys/query, POST /user/keys/claim (server-server user_devices.yaml and
user_keys.yaml). Only users of this server are answered for."""

from __future__ import annotations

from aiohttp import web

from e2ee.keys import parse_claim_body, parse_query_body
from federation.rooms import server_of
from federation.route_table import FederationRouteTable
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, invalid_param
from homeserver.http.request import json_response

routes = FederationRouteTable()

PREFIX = "/_matrix/federation/v1/user"


def _object_body(content) -> dict:
    if content is None:
        raise MatrixError(400, "M_NOT_JSON", "Request body is empty; expected a JSON object")
    if not isinstance(content, dict):
        raise MatrixError(400, "M_NOT_JSON", "Request body must be a JSON object")
    return content


def _local_only(hs, by_user: dict) -> dict:
    """Remote servers may only ask about our users; others are left out of the answer."""
    return {u: v for u, v in by_user.items() if server_of(u) == hs.server_name}


@routes.get(PREFIX + "/devices/{user_id}")
async def user_devices(request: web.Request, _origin: str, _content) -> web.Response:
    hs = get_hs(request)
    user_id = request.match_info["user_id"]
    if not user_id.startswith("@") or server_of(user_id) != hs.server_name:
        raise invalid_param("Not a user of this server")
    return json_response(await hs.federation.edus.device_lists.local_device_list(user_id))


@routes.post(PREFIX + "/keys/query")
async def query_keys(request: web.Request, _origin: str, content) -> web.Response:
    hs = get_hs(request)
    wanted = _local_only(hs, parse_query_body(_object_body(content)))
    keys = await hs.e2ee.keys.query_local_keys(wanted, None)
    keys.pop("user_signing_keys", None)  # only ever shown to their owner
    return json_response(keys)


@routes.post(PREFIX + "/keys/claim")
async def claim_keys(request: web.Request, _origin: str, content) -> web.Response:
    hs = get_hs(request)
    wanted = _local_only(hs, parse_claim_body(_object_body(content)))
    return json_response({"one_time_keys": await hs.e2ee.keys.claim_local_keys(wanted)})
