"""Federation media endpoints (spec v1.11): admitted servers download our media and
thumbnails as multipart/mixed. The bytes come from homeserver's media repository;
request signing and the allow-list are checked by the route table before anything here
runs."""

from __future__ import annotations

from aiohttp import web

from federation.route_table import FederationRouteTable
from homeserver.http.context import get_hs
from homeserver.http.request import query_int
from homeserver.media.headers import content_disposition
from homeserver.media.params import thumbnail_params
from homeserver.media.remote import serve_federation_media
from homeserver.media.repository import MAX_TIMEOUT_MS

routes = FederationRouteTable()

PREFIX = "/_matrix/federation/v1/media"


def _timeout_ms(request: web.Request) -> int:
    return query_int(request, "timeout_ms", 20_000, minimum=0, maximum=MAX_TIMEOUT_MS)


@routes.get(PREFIX + "/download/{media_id}")
async def download(request: web.Request, _origin: str, _content) -> web.StreamResponse:
    info, chunks = await get_hs(request).media.federation_file(
        request.match_info["media_id"], _timeout_ms(request)
    )
    media_type = info.media_type or "application/octet-stream"
    return await serve_federation_media(
        request,
        media_type,
        info.media_length,
        chunks,
        content_disposition(media_type, info.upload_name),
    )


@routes.get(PREFIX + "/thumbnail/{media_id}")
async def thumbnail(request: web.Request, _origin: str, _content) -> web.StreamResponse:
    width, height, method = thumbnail_params(request)
    repo = get_hs(request).media
    thumb, chunks = await repo.federation_thumbnail(
        request.match_info["media_id"], width, height, method, _timeout_ms(request)
    )
    return await serve_federation_media(request, thumb.media_type, thumb.length, chunks)
