"""Media endpoints: upload and async upload under /_matrix/media, authenticated download,
thumbnail, preview and config under /_matrix/client/v1/media, and the legacy
/_matrix/media/v3 download|thumbnail (frozen by default, as spec v1.11 allows)."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.context import get_hs
from homeserver.http.errors import MatrixError, invalid_param, missing_param, not_found
from homeserver.http.request import json_response, query_bool, query_int
from homeserver.http.routes import RouteTable
from homeserver.media.headers import valid_filename
from homeserver.media.params import thumbnail_params
from homeserver.media.repository import MAX_TIMEOUT_MS

routes = RouteTable()

MEDIA = "/_matrix/media"
AUTHED = ("v1",)
LEGACY = ("r0", "v3")


def _repo(request: web.Request):
    return get_hs(request).media


def _filename(request: web.Request) -> str | None:
    name = request.query.get("filename")
    if name is None or name == "":
        return None
    if not valid_filename(name):
        raise invalid_param("Invalid filename")
    return name


# --- uploads ------------------------------------------------------------------------------


@routes.post("/upload", prefix=MEDIA, versions=LEGACY, ratelimit=True)
async def upload(request: web.Request, requester) -> web.Response:
    filename = _filename(request)
    uri = await _repo(request).upload(
        requester.user_id, request, request.headers.get("Content-Type"), filename
    )
    return json_response({"content_uri": uri})


@routes.post("/create", prefix=MEDIA, versions=AUTHED, ratelimit=True)
async def create(request: web.Request, requester) -> web.Response:
    uri, expires = await _repo(request).create(requester.user_id)
    return json_response({"content_uri": uri, "unused_expires_at": expires})


@routes.put("/upload/{server_name}/{media_id}", prefix=MEDIA, versions=LEGACY, ratelimit=True)
async def upload_reserved(request: web.Request, requester) -> web.Response:
    filename = _filename(request)
    await _repo(request).upload_reserved(
        requester.user_id,
        request.match_info["server_name"],
        request.match_info["media_id"],
        request,
        request.headers.get("Content-Type"),
        filename,
    )
    return json_response({})


# --- downloads and thumbnails -------------------------------------------------------------


async def _download(request: web.Request, filename: str | None = None) -> web.StreamResponse:
    repo = _repo(request)
    timeout_ms = query_int(request, "timeout_ms", 20_000, maximum=MAX_TIMEOUT_MS)
    info = await repo.resolve(
        request.match_info["server_name"], request.match_info["media_id"], timeout_ms
    )
    return await repo.respond(request, info, filename)


async def _thumbnail(request: web.Request) -> web.StreamResponse:
    repo = _repo(request)
    width, height, method = thumbnail_params(request)
    animated = query_bool(request, "animated", False)
    timeout_ms = query_int(request, "timeout_ms", 20_000, maximum=MAX_TIMEOUT_MS)
    info = await repo.resolve(
        request.match_info["server_name"], request.match_info["media_id"], timeout_ms
    )
    return await repo.thumbnail(request, info, width, height, method, animated)


@routes.get("/media/download/{server_name}/{media_id}", versions=AUTHED)
async def download(request: web.Request, _requester) -> web.StreamResponse:
    return await _download(request)


@routes.get("/media/download/{server_name}/{media_id}/{file_name:[^/]*}", versions=AUTHED)
async def download_named(request: web.Request, _requester) -> web.StreamResponse:
    # Empty file name: matrix-nio asks for ".../{media_id}/" when it has none.
    return await _download(request, request.match_info["file_name"] or None)


@routes.get("/media/thumbnail/{server_name}/{media_id}", versions=AUTHED)
async def thumbnail(request: web.Request, _requester) -> web.StreamResponse:
    return await _thumbnail(request)


# --- legacy unauthenticated endpoints -----------------------------------------------------


def _legacy(serve):
    """A legacy unauthenticated endpoint. Once the operator froze them (the default), only
    media created or cached while they were open is served; anything newer answers
    404 M_NOT_FOUND and is never fetched from another server (spec v1.11 "freeze")."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if get_hs(request).config.media.legacy_endpoints_frozen:
            info = await _repo(request).cached(
                request.match_info["server_name"], request.match_info["media_id"]
            )
            if info is None or not info.legacy_access:
                raise not_found("Unauthenticated media is frozen; use /_matrix/client/v1/media")
        return await serve(request)

    return handler


routes.get("/download/{server_name}/{media_id}", prefix=MEDIA, versions=LEGACY, auth=False)(
    _legacy(_download)
)
routes.get(
    "/download/{server_name}/{media_id}/{file_name:[^/]*}",
    prefix=MEDIA,
    versions=LEGACY,
    auth=False,
)(_legacy(lambda request: _download(request, request.match_info["file_name"] or None)))
routes.get("/thumbnail/{server_name}/{media_id}", prefix=MEDIA, versions=LEGACY, auth=False)(
    _legacy(_thumbnail)
)


# --- config and previews ------------------------------------------------------------------


async def _config(request: web.Request, _requester) -> web.Response:
    return json_response({"m.upload.size": get_hs(request).config.media.max_upload_size})


async def _preview(request: web.Request, _requester) -> web.Response:
    config = get_hs(request).config.media
    if not config.url_preview_enabled:
        # What Synapse answers with previews off: the endpoint does not exist.
        raise MatrixError(404, "M_UNRECOGNIZED", "URL previews are disabled on this server")
    url = request.query.get("url")
    if not url:
        raise missing_param("Missing 'url'")
    ts = query_int(request, "ts", None)
    return json_response(await _repo(request).previews.preview(url, ts))


routes.get("/media/config", versions=AUTHED)(_config)
routes.get("/config", prefix=MEDIA, versions=LEGACY)(_config)
routes.get("/media/preview_url", versions=AUTHED, ratelimit=True)(_preview)
routes.get("/preview_url", prefix=MEDIA, versions=LEGACY, ratelimit=True)(_preview)
