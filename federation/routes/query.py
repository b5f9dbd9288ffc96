"""Signed queries that need no room events: version, profile, directory."""

from __future__ import annotations

from aiohttp import web

from federation.route_table import FederationRouteTable
from homeserver.http.context import get_hs
from homeserver.http.errors import invalid_param, missing_param, not_found
from homeserver.http.request import json_response

routes = FederationRouteTable()

SERVER_SOFTWARE = {"name": "sovereign-homeserver", "version": "0.1.0"}
PROFILE_FIELDS = ("displayname", "avatar_url")


# Public (version.yaml has no security): it names our software and nothing else.
@routes.get("/_matrix/federation/v1/version", public=True)
async def version(_request: web.Request) -> web.Response:
    return json_response({"server": SERVER_SOFTWARE})


def _local_part_of(request: web.Request, name: str, sigil: str) -> str:
    """The query parameter `name`, which must be an identifier on this server."""
    value = request.query.get(name)
    if not value:
        raise missing_param(f"Missing '{name}'")
    if not value.startswith(sigil) or ":" not in value:
        raise invalid_param(f"'{name}' is not a valid identifier")
    if value.split(":", 1)[1] != get_hs(request).server_name:
        raise invalid_param(f"'{name}' is not on this server")
    return value


@routes.get("/_matrix/federation/v1/query/profile")
async def query_profile(request: web.Request, _origin: str, _content) -> web.Response:
    user_id = _local_part_of(request, "user_id", "@")
    wanted = request.query.get("field")
    if wanted is not None and wanted not in PROFILE_FIELDS:
        # Fields we do not keep: the spec lets us omit them.
        return json_response({})
    profile = await get_hs(request).federation.store.local_profile(user_id)
    if profile is None:
        raise not_found("Profile not found")
    fields = (wanted,) if wanted else PROFILE_FIELDS
    return json_response({f: profile[f] for f in fields if profile[f] is not None})


@routes.get("/_matrix/federation/v1/query/directory")
async def query_directory(request: web.Request, _origin: str, _content) -> web.Response:
    alias = _local_part_of(request, "room_alias", "#")
    store = get_hs(request).federation.store
    room_id = await store.alias_room(alias)
    if room_id is None:
        raise not_found("Room alias not found")
    hs = get_hs(request)
    # Our own name first: we answered, so we surely hold the room's state.
    servers = [hs.server_name] + [
        s for s in sorted(await hs.membership_store.servers_in_room(room_id)) if s != hs.server_name
    ]
    return json_response({"room_id": room_id, "servers": servers})
