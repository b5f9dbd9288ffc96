"""Room aliases, the room directory, the public room list and the user directory
(directory.yaml, list_public_rooms.yaml, users.yaml)."""

from __future__ import annotations

from aiohttp import web

from federation.errors import FederationError
from homeserver.directory.public_rooms import public_rooms
from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.http.request import field, json_body, json_response, query_int
from homeserver.http.routes import RouteTable, authenticated
from homeserver.policy.rules import ACCESS_RULES, RESTRICTED, rule_of
from homeserver.rooms import canonical_alias
from storage.directory import AliasExists, DirectoryStore

routes = RouteTable()

MAX_ALIAS_LENGTH = 255
MAX_PUBLIC_ROOMS_LIMIT = 500
MAX_USER_SEARCH_LIMIT = 50


def _store(request: web.Request) -> DirectoryStore:
    return get_hs(request).directory


def _check_alias(request: web.Request, alias: str, *, local: bool) -> str:
    localpart, sep, server = alias[1:].partition(":")
    if not alias.startswith("#") or not sep or not localpart or not server:
        raise invalid_param("Room aliases look like #localpart:server")
    if len(alias.encode()) > MAX_ALIAS_LENGTH or any(c.isspace() for c in alias):
        raise invalid_param("Room aliases are at most 255 bytes, without whitespace")
    if local and server != get_hs(request).server_name:
        raise invalid_param("Aliases can only be created on this server")
    return alias


async def _can_edit_directory(store: DirectoryStore, room, user_id: str) -> bool:
    """Creators (v12: with infinite power) and users allowed to set m.room.canonical_alias."""
    if room["creator"] == user_id:
        return True
    state = (await store.summary_state([room["room_id"]]))[room["room_id"]]
    if user_id in (state.get("m.room.create", {}).get("additional_creators") or []):
        return True
    levels = state.get("m.room.power_levels")
    if levels is None:
        return False
    users = _dict(levels.get("users"))
    events = _dict(levels.get("events"))
    mine = _int(users.get(user_id), _int(levels.get("users_default"), 0))
    needed = _int(events.get("m.room.canonical_alias"), _int(levels.get("state_default"), 50))
    return mine >= needed


def _int(value, default: int) -> int:
    if isinstance(value, bool):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


# -- aliases ----------------------------------------------------------------------------------


@routes.put("/directory/room/{alias}", ratelimit=True)
async def put_alias(request: web.Request, requester: Requester) -> web.Response:
    alias = _check_alias(request, request.match_info["alias"], local=True)
    room_id = field(await json_body(request), "room_id", str)
    store = _store(request)
    if await store.room(room_id) is None:
        raise not_found("Unknown room")
    hs = get_hs(request)
    hs.appservices.check_alias_claim(alias, requester.user_id)
    # An appservice manages the aliases of its namespace without joining the rooms (it
    # may bridge rooms it never joins); everyone else must be in the room.
    svc = requester.appservice
    if not (svc is not None and svc.is_alias(alias)) and (
        await hs.membership_store.membership(room_id, requester.user_id) != "join"
    ):
        raise forbidden("You must be in the room to give it an alias")
    try:
        await store.create_alias(alias, room_id, requester.user_id)
    except AliasExists:
        raise MatrixError(409, "M_UNKNOWN", "Room alias already exists") from None
    return json_response({})


@routes.get("/directory/room/{alias}", auth=False)
async def get_alias(request: web.Request) -> web.Response:
    alias = _check_alias(request, request.match_info["alias"], local=False)
    hs = get_hs(request)
    if alias.split(":", 1)[1] != hs.server_name:
        if not hs.federation.policy.federates:
            raise not_found("Room alias not found (this server does not federate)")
        room_id, servers = await hs.federation.membership.remote.resolve_alias(alias)
        return json_response({"room_id": room_id, "servers": servers})
    row = await hs.directory.alias(alias)
    if row is None and await hs.appservices.query_alias(alias):
        row = await hs.directory.alias(alias)  # the appservice created it
    if row is None:
        raise not_found("Room alias not found")
    return json_response({"room_id": row["room_id"], "servers": [hs.server_name]})


@routes.delete("/directory/room/{alias}")
async def delete_alias(request: web.Request, requester: Requester) -> web.Response:
    alias = _check_alias(request, request.match_info["alias"], local=False)
    store = _store(request)
    row = await store.alias(alias)
    if row is None:
        raise not_found("Room alias not found")
    svc = requester.appservice
    if (
        row["creator"] != requester.user_id
        and not requester.is_admin
        and not (svc is not None and svc.is_alias(alias))
    ):
        room = await store.room(row["room_id"])
        if room is None or not await _can_edit_directory(store, room, requester.user_id):
            raise forbidden("Only the alias' creator or a room admin can delete it")
    if not await store.delete_alias(alias):
        raise not_found("Room alias not found")
    await canonical_alias.forget_alias(get_hs(request), requester.user_id, row["room_id"], alias)
    return json_response({})


@routes.get("/rooms/{room_id}/aliases")
async def room_aliases(request: web.Request, requester: Requester) -> web.Response:
    room_id = request.match_info["room_id"]
    store = _store(request)
    if await store.room(room_id) is None:
        raise forbidden("You are not in this room")
    if await get_hs(request).membership_store.membership(room_id, requester.user_id) != "join":
        state = (await store.summary_state([room_id]))[room_id]
        visibility = state.get("m.room.history_visibility", {}).get("history_visibility")
        if visibility != "world_readable":
            raise forbidden("You are not in this room")
    return json_response({"aliases": await store.room_aliases(room_id)})


# -- room directory ---------------------------------------------------------------------------


@routes.get("/directory/list/room/{room_id}", auth=False)
async def get_visibility(request: web.Request) -> web.Response:
    room = await _store(request).room(request.match_info["room_id"])
    if room is None:
        raise not_found("Unknown room")
    return json_response({"visibility": "public" if room["is_public"] else "private"})


@routes.put("/directory/list/room/{room_id}")
async def put_visibility(request: web.Request, requester: Requester) -> web.Response:
    visibility = field(await json_body(request), "visibility", str)
    if visibility not in ("public", "private"):
        raise invalid_param("'visibility' must be public or private")
    store = _store(request)
    room = await store.room(request.match_info["room_id"])
    if room is None:
        raise not_found("Unknown room")
    if not requester.is_admin and not await _can_edit_directory(store, room, requester.user_id):
        raise forbidden("Only room admins can publish a room")
    hs = get_hs(request)
    if visibility == "public" and hs.policy.access_rules:
        rules = await hs.events.current_state_event(room["room_id"], ACCESS_RULES)
        rule = rule_of({(ACCESS_RULES, ""): rules.event} if rules else {})
        if rule != RESTRICTED:
            raise forbidden(f"A room whose access rule is {rule} cannot be published")
    await store.set_public(room["room_id"], visibility == "public")
    return json_response({})


async def _set_appservice_listed(request: web.Request, requester: Requester, listed: bool):
    """An appservice's own room list, per bridged network (Application Service API)."""
    svc = requester.appservice
    if svc is None:
        raise forbidden("Only application services can edit their room lists")
    store = _store(request)
    room_id = request.match_info["room_id"]
    if await store.room(room_id) is None:
        raise not_found("Unknown room")
    await store.set_appservice_listed(svc.id, request.match_info["network_id"], room_id, listed)
    return json_response({})


@routes.put("/directory/list/appservice/{network_id}/{room_id}")
async def put_appservice_visibility(request: web.Request, requester: Requester) -> web.Response:
    visibility = field(await json_body(request), "visibility", str)
    if visibility not in ("public", "private"):
        raise invalid_param("'visibility' must be public or private")
    return await _set_appservice_listed(request, requester, visibility == "public")


@routes.delete("/directory/list/appservice/{network_id}/{room_id}")
async def delete_appservice_visibility(request: web.Request, requester: Requester) -> web.Response:
    return await _set_appservice_listed(request, requester, False)


# -- public room list -------------------------------------------------------------------------


def _remote_server(request: web.Request) -> str | None:
    server = request.query.get("server")
    return server if server and server != get_hs(request).server_name else None


async def _remote_public_rooms(request: web.Request, server: str, body: dict | None):
    """Another server's room directory, fetched over federation for a signed-in user
    (as Synapse does: an anonymous caller cannot make us contact other servers)."""
    hs = get_hs(request)
    await authenticated(request)
    if not hs.federation.policy.is_allowed(server):
        raise forbidden("Federation with this server is not allowed")
    path = "/_matrix/federation/v1/publicRooms"
    try:
        if body is None:
            query = {k: request.query[k] for k in ("limit", "since") if request.query.get(k)}
            answer = await hs.federation.client.get_json(server, path, query=query)
        else:
            answer = await hs.federation.client.post_json(server, path, body)
    except FederationError:
        answer = None
    if not isinstance(answer, dict) or not isinstance(answer.get("chunk"), list):
        raise MatrixError(502, "M_UNKNOWN", "Could not fetch that server's room directory")
    return json_response(answer)


@routes.get("/publicRooms", auth=False)
async def get_public_rooms(request: web.Request) -> web.Response:
    remote = _remote_server(request)
    if remote is not None:
        query_int(request, "limit", None)  # checked here, before asking anyone
        return await _remote_public_rooms(request, remote, None)
    limit = query_int(request, "limit", None, maximum=MAX_PUBLIC_ROOMS_LIMIT)
    return json_response(
        await public_rooms(_store(request), limit=limit, since=request.query.get("since"))
    )


@routes.post("/publicRooms")
async def post_public_rooms(request: web.Request, _requester: Requester) -> web.Response:
    body = await json_body(request, allow_empty=True)
    limit = field(body, "limit", int, None)
    if limit is not None and limit < 0:
        raise invalid_param("'limit' must not be negative")
    since = field(body, "since", str, None)
    flt = field(body, "filter", dict, {})
    term = field(flt, "generic_search_term", str, None)
    room_types = field(flt, "room_types", list, None)
    if room_types is not None and not all(t is None or isinstance(t, str) for t in room_types):
        raise invalid_param("'room_types' holds strings or null")
    instance_id = field(body, "third_party_instance_id", str, None)
    all_networks = field(body, "include_all_networks", bool, False)
    network = None
    if instance_id is not None:
        if all_networks:
            raise invalid_param("Use third_party_instance_id or include_all_networks, not both")
        appservice_id, sep, network_id = instance_id.partition("|")
        if not sep:
            raise invalid_param("Unknown third_party_instance_id")
        network = (appservice_id, network_id)
    remote = _remote_server(request)
    if remote is not None:
        forwarded = {"limit": limit, "since": since, "filter": flt}
        return await _remote_public_rooms(
            request, remote, {k: v for k, v in forwarded.items() if v is not None}
        )
    return json_response(
        await public_rooms(
            _store(request),
            limit=min(limit, MAX_PUBLIC_ROOMS_LIMIT) if limit is not None else None,
            since=since,
            term=term,
            room_types=room_types,
            network=network,
            all_networks=all_networks,
        )
    )


# -- user directory ---------------------------------------------------------------------------


@routes.post("/user_directory/search", ratelimit=True)
async def search_users(request: web.Request, requester: Requester) -> web.Response:
    body = await json_body(request)
    term = field(body, "search_term", str)
    limit = field(body, "limit", int, 10)
    if limit < 0:
        raise invalid_param("'limit' must not be negative")
    limit = min(limit, MAX_USER_SEARCH_LIMIT)
    hs = get_hs(request)
    rows = await _store(request).search_users(
        requester.user_id,
        term.strip(),
        limit,
        co_members_only=await hs.policy.is_external(requester.user_id),
        external_servers=hs.config.access_rules.external_servers,
    )
    results = []
    for r in rows[:limit]:
        entry = {"user_id": r["user_id"]}
        if r["displayname"] is not None:
            entry["display_name"] = r["displayname"]
        if r["avatar_url"] is not None:
            entry["avatar_url"] = r["avatar_url"]
        results.append(entry)
    return json_response({"results": results, "limited": len(rows) > limit})


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}
