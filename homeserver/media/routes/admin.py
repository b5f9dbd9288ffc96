"""Media administration for server admins, in Synapse's admin API shapes so that existing
tools (synadm, Synapse-Admin) work: quarantine (one item, or everything a room refers to),
delete, per-user usage, a room's media."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.auth import require_admin
from homeserver.http.context import get_hs
from homeserver.http.errors import (
    MatrixError,
    invalid_param,
    not_found,
)
from homeserver.http.request import json_response, query_int, required_query_int
from homeserver.http.routes import RouteTable
from homeserver.media import ids
from homeserver.media.room_media import media_in_room

routes = RouteTable()

ADMIN = "/_synapse/admin/v1"


def _target(request: web.Request) -> tuple[str, str]:
    server_name = ids.check_server_name(request.match_info["server_name"])
    return server_name, ids.check_media_id(request.match_info["media_id"])


def _page(request: web.Request) -> tuple[int, int]:
    return query_int(request, "from", 0), query_int(request, "limit", 100, maximum=1000)


def _paged(key: str, items: list, total: int, start: int) -> web.Response:
    body = {key: items, "total": total}
    if start + len(items) < total:
        body["next_token"] = start + len(items)
    return json_response(body)


async def _set_quarantine(request: web.Request, requester, quarantine: bool) -> web.Response:
    require_admin(request, requester)
    server_name, media_id = _target(request)
    by = requester.user_id if quarantine else None
    await get_hs(request).media.store.set_quarantine(server_name, media_id, by)
    return json_response({})


@routes.post(ADMIN + "/media/quarantine/{server_name}/{media_id}", raw_path=True)
async def quarantine(request: web.Request, requester) -> web.Response:
    return await _set_quarantine(request, requester, True)


@routes.post(ADMIN + "/media/unquarantine/{server_name}/{media_id}", raw_path=True)
async def unquarantine(request: web.Request, requester) -> web.Response:
    return await _set_quarantine(request, requester, False)


@routes.delete(ADMIN + "/media/{server_name}/{media_id}", raw_path=True)
async def delete_media(request: web.Request, requester) -> web.Response:
    require_admin(request, requester)
    server_name, media_id = _target(request)
    hs = get_hs(request)
    if server_name != hs.server_name:
        raise MatrixError(400, "M_UNKNOWN", "Can only delete local media")
    if not await hs.media.delete_local(media_id):
        raise not_found("Unknown media")
    return json_response({"deleted_media": [media_id], "total": 1})


@routes.post(ADMIN + "/purge_media_cache", raw_path=True)
async def purge_media_cache(request: web.Request, requester) -> web.Response:
    """Synapse's purge of cached remote media. Here `before_ts` is compared with when the
    file was cached (access times are not tracked)."""
    require_admin(request, requester)
    before_ts = required_query_int(request, "before_ts")
    return json_response({"deleted": await get_hs(request).media.purge_remote_cache(before_ts)})


@routes.get(ADMIN + "/users/{user_id}/media", raw_path=True)
async def user_media(request: web.Request, requester) -> web.Response:
    require_admin(request, requester)
    start, limit = _page(request)
    media, total = await get_hs(request).media.store.user_media(
        request.match_info["user_id"], start, limit
    )
    return _paged("media", media, total, start)


@routes.get(ADMIN + "/statistics/users/media", raw_path=True)
async def usage_by_user(request: web.Request, requester) -> web.Response:
    require_admin(request, requester)
    start, limit = _page(request)
    order_by = request.query.get("order_by", "user_id")
    if order_by not in ("user_id", "media_length", "media_count"):
        raise invalid_param("Unknown order_by")
    direction = request.query.get("dir", "f")
    if direction not in ("f", "b"):
        raise invalid_param("'dir' must be 'f' or 'b'")
    users, total = await get_hs(request).media.store.usage_by_user(
        start, limit, order_by, direction == "b"
    )
    return _paged("users", users, total, start)


async def _room_media(request: web.Request, requester):
    require_admin(request, requester)
    hs = get_hs(request)
    room_id = request.match_info["room_id"]
    if not await hs.media.store.room_exists(room_id):
        raise not_found("Room not found")
    return await media_in_room(hs.media.store, room_id)


@routes.get(ADMIN + "/room/{room_id}/media", raw_path=True)
async def list_room_media(request: web.Request, requester) -> web.Response:
    local, remote = await _room_media(request, requester)
    server_name = get_hs(request).server_name
    return json_response(
        {
            "local": [f"mxc://{server_name}/{m}" for m in local],
            "remote": [f"mxc://{origin}/{m}" for origin, m in remote],
        }
    )


async def quarantine_room_media(request: web.Request, requester) -> web.Response:
    local, remote = await _room_media(request, requester)
    count = await get_hs(request).media.store.quarantine_many(local, remote, requester.user_id)
    return json_response({"num_quarantined": count})


routes.post(ADMIN + "/room/{room_id}/media/quarantine", raw_path=True)(quarantine_room_media)
# The older Synapse path for the same operation, still used by some tools.
routes.post(ADMIN + "/quarantine_media/{room_id}", raw_path=True)(quarantine_room_media)
