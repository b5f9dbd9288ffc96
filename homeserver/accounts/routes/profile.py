"""GET /profile/{userId}[/displayname|/avatar_url] and PUT of both fields."""

from __future__ import annotations

from aiohttp import web

from federation.errors import FederationError
from homeserver.accounts.membership import propagate_profile
from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, bad_json, forbidden, invalid_param, not_found
from homeserver.http.request import json_body, json_response
from homeserver.http.routes import RouteTable, authenticated

routes = RouteTable()

FIELDS = ("displayname", "avatar_url")
MAX_LENGTH = {"displayname": 256, "avatar_url": 1000}


async def _profile(request: web.Request) -> dict:
    user_id = request.match_info["user_id"]
    server = user_id.partition(":")[2]
    if server and server != get_hs(request).server_name:
        return await _remote_profile(request, user_id, server)
    hs = get_hs(request)
    row = await hs.accounts.profiles.get(user_id)
    if row is None and await hs.appservices.query_user(user_id):
        row = await hs.accounts.profiles.get(user_id)  # the appservice created it
    if row is None:
        raise not_found("Profile not found")
    return {k: row[k] for k in FIELDS if row[k] is not None}


async def _remote_profile(request: web.Request, user_id: str, server: str) -> dict:
    """Another server's user, asked of that server (federation query/profile); only for
    a signed-in user, so that an anonymous caller cannot make us contact other servers."""
    hs = get_hs(request)
    await authenticated(request)
    if not hs.federation.policy.is_allowed(server):
        raise forbidden("Federation with this server is not allowed")
    try:
        answer = await hs.federation.client.get_json(
            server, "/_matrix/federation/v1/query/profile", query={"user_id": user_id}
        )
    except FederationError as e:
        if e.status == 404:
            raise not_found("Profile not found") from None
        raise MatrixError(502, "M_UNKNOWN", "Could not fetch the profile from its server") from None
    if not isinstance(answer, dict):
        raise MatrixError(502, "M_UNKNOWN", "Could not fetch the profile from its server")
    return {k: answer[k] for k in FIELDS if isinstance(answer.get(k), str)}


@routes.get("/profile/{user_id}", auth=False)
async def get_profile(request: web.Request) -> web.Response:
    return json_response(await _profile(request))


def _field_getter(name: str):
    async def handler(request: web.Request) -> web.Response:
        profile = await _profile(request)
        return json_response({name: profile[name]} if name in profile else {})

    return handler


def _field_setter(name: str):
    async def handler(request: web.Request, requester: Requester) -> web.Response:
        hs = get_hs(request)
        user_id = request.match_info["user_id"]
        if user_id != requester.user_id and not hs.accounts.is_server_admin(
            requester.user_id, requester.is_admin
        ):
            raise forbidden("Cannot set another user's profile")
        body = await json_body(request)
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise bad_json(f"'{name}' must be a string")
        if value is not None and len(value) > MAX_LENGTH[name]:
            raise invalid_param(f"'{name}' is too long")
        if name == "avatar_url" and value and not value.startswith("mxc://"):
            raise invalid_param("'avatar_url' must be an mxc:// URI")
        value = value or None  # "" clears the field, as clients use it
        profiles = hs.accounts.profiles
        current = await profiles.get(user_id)
        if current is None:
            raise not_found("No such user")
        await profiles.set_field(user_id, name, value)
        updated = {k: current[k] for k in FIELDS} | {name: value}
        await propagate_profile(hs, user_id, updated["displayname"], updated["avatar_url"])
        return json_response({})

    return handler


for _name in FIELDS:
    routes.get(f"/profile/{{user_id}}/{_name}", auth=False)(_field_getter(_name))
    routes.put(f"/profile/{{user_id}}/{_name}", ratelimit=True)(_field_setter(_name))
