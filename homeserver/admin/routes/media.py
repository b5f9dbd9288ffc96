"""Media administration in Synapse's shapes (synadm, synapse-admin): quarantine of one
item, a room's media or a user's media; protection from quarantine; deletion of one item,
of old or large media, or of a user's media; per-user usage; a room's media; the remote
cache purge."""

from __future__ import annotations

from aiohttp import web

from homeserver.admin.api import AdminRoutes, direction, local_user, note, order, page, paged
from homeserver.http.auth import Requester
from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, not_found
from homeserver.http.request import (
    json_response,
    query_bool,
    query_int,
    required_query_int,
)
from homeserver.http.routes import RouteTable
from homeserver.media import ids
from homeserver.media.room_media import media_in_room
from storage.media import USER_MEDIA_ORDERS

routes = RouteTable()
admin = AdminRoutes(routes)


def _target(request: web.Request) -> tuple[str, str]:
    server_name = ids.check_server_name(request.match_info["server_name"])
    return server_name, ids.check_media_id(request.match_info["media_id"])


def _local_server(request: web.Request) -> None:
    """Synapse's older paths name the server; only this one's media can be deleted."""
    server_name = request.match_info.get("server_name")
    if server_name is not None and server_name != get_hs(request).server_name:
        raise MatrixError(400, "M_UNKNOWN", "Can only delete local media")


async def _set_quarantine(request: web.Request, requester: Requester, on: bool) -> web.Response:
    server_name, media_id = _target(request)
    by = requester.user_id if on else None
    await get_hs(request).media.store.set_quarantine(server_name, media_id, by)
    note(request, f"mxc://{server_name}/{media_id}")
    return json_response({})


@admin.post("/v1/media/quarantine/{server_name}/{media_id}")
async def quarantine_media(request: web.Request, requester: Requester) -> web.Response:
    return await _set_quarantine(request, requester, True)


@admin.post("/v1/media/unquarantine/{server_name}/{media_id}")
async def unquarantine_media(request: web.Request, requester: Requester) -> web.Response:
    return await _set_quarantine(request, requester, False)


async def _set_protected(request: web.Request, protected: bool) -> web.Response:
    media_id = ids.check_media_id(request.match_info["media_id"])
    if not await get_hs(request).media.store.set_protected(media_id, protected):
        raise not_found("Unknown media")
    return json_response({})


@admin.post("/v1/media/protect/{media_id}")
async def protect_media(request: web.Request, _requester: Requester) -> web.Response:
    return await _set_protected(request, True)


@admin.post("/v1/media/unprotect/{media_id}")
async def unprotect_media(request: web.Request, _requester: Requester) -> web.Response:
    return await _set_protected(request, False)


@admin.delete("/v1/media/{server_name}/{media_id}")
async def delete_media(request: web.Request, _requester: Requester) -> web.Response:
    _local_server(request)
    media_id = ids.check_media_id(request.match_info["media_id"])
    if not await get_hs(request).media.delete_local(media_id):
        raise not_found("Unknown media")
    return json_response({"deleted_media": [media_id], "total": 1})


async def _delete_old_media(request: web.Request, _requester: Requester) -> web.Response:
    """POST .../delete?before_ts=&size_gt=&keep_profiles=: local media last used before
    `before_ts` (ms) and larger than `size_gt` bytes."""
    _local_server(request)
    before_ts = required_query_int(request, "before_ts")
    size_gt = query_int(request, "size_gt", 0)
    keep_profiles = query_bool(request, "keep_profiles", True)
    hs = get_hs(request)
    chosen = await hs.media.store.local_media_to_delete(before_ts, size_gt, keep_profiles)
    deleted = await hs.media.delete_local_many(chosen)
    note(request, before_ts=before_ts, size_gt=size_gt, deleted=len(deleted))
    return json_response({"deleted_media": deleted, "total": len(deleted)})


admin.post("/v1/media/delete", action="delete_old_media")(_delete_old_media)
# The older path naming the server, which synapse-admin still calls.
admin.post("/v1/media/{server_name}/delete", action="delete_old_media")(_delete_old_media)


@admin.post("/v1/purge_media_cache")
async def purge_media_cache(request: web.Request, _requester: Requester) -> web.Response:
    """Synapse's purge of cached remote media. Here `before_ts` is compared with when the
    file was cached (access times are not tracked)."""
    before_ts = required_query_int(request, "before_ts")
    deleted = await get_hs(request).media.purge_remote_cache(before_ts)
    note(request, before_ts=before_ts, deleted=deleted)
    return json_response({"deleted": deleted})


@admin.get("/v1/users/{user_id}/media")
async def user_media(request: web.Request, _requester: Requester) -> web.Response:
    """Newest first unless `order_by` / `dir` say otherwise (as in Synapse)."""
    user_id = local_user(request)
    start, limit = page(request)
    order_by = order(request, USER_MEDIA_ORDERS, "created_ts")
    # Synapse: with neither given, newest first; with either, `dir` defaults to f.
    given = "order_by" in request.query or "dir" in request.query
    descending = direction(request) if given else True
    media, total = await get_hs(request).media.store.user_media(
        user_id, start, limit, order_by, descending
    )
    return paged("media", media, total, start)


@admin.delete("/v1/users/{user_id}/media")
async def delete_user_media(request: web.Request, _requester: Requester) -> web.Response:
    user_id = local_user(request)
    hs = get_hs(request)
    deleted = await hs.media.delete_local_many(await hs.media.store.user_media_ids(user_id))
    note(request, deleted=len(deleted))
    return json_response({"deleted_media": deleted, "total": len(deleted)})


@admin.post("/v1/user/{user_id}/media/quarantine")
async def quarantine_user_media(request: web.Request, requester: Requester) -> web.Response:
    user_id = local_user(request)
    store = get_hs(request).media.store
    count = await store.quarantine_many(await store.user_media_ids(user_id), [], requester.user_id)
    note(request, quarantined=count)
    return json_response({"num_quarantined": count})


@admin.get("/v1/statistics/users/media")
async def usage_by_user(request: web.Request, _requester: Requester) -> web.Response:
    start, limit = page(request)
    order_by = order(request, ("user_id", "displayname", "media_length", "media_count"), "user_id")
    users, total = await get_hs(request).media.store.usage_by_user(
        start, limit, order_by, direction(request), request.query.get("search_term") or None
    )
    return paged("users", users, total, start)


async def _room_media(request: web.Request):
    hs = get_hs(request)
    room_id = request.match_info["room_id"]
    if not await hs.media.store.room_exists(room_id):
        raise not_found("Room not found")
    return await media_in_room(hs.media.store, room_id)


@admin.get("/v1/room/{room_id}/media")
async def list_room_media(request: web.Request, _requester: Requester) -> web.Response:
    local, remote = await _room_media(request)
    server_name = get_hs(request).server_name
    return json_response(
        {
            "local": [f"mxc://{server_name}/{m}" for m in local],
            "remote": [f"mxc://{origin}/{m}" for origin, m in remote],
            "total": len(local) + len(remote),
        }
    )


async def _quarantine_room_media(request: web.Request, requester: Requester) -> web.Response:
    local, remote = await _room_media(request)
    count = await get_hs(request).media.store.quarantine_many(local, remote, requester.user_id)
    note(request, quarantined=count)
    return json_response({"num_quarantined": count})


admin.post("/v1/room/{room_id}/media/quarantine", action="quarantine_room_media")(
    _quarantine_room_media
)
# The older Synapse path for the same operation, still used by some tools.
admin.post("/v1/quarantine_media/{room_id}", action="quarantine_room_media")(_quarantine_room_media)
