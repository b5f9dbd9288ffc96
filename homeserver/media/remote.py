"""The federation seam: how remote media gets in, and how ours goes out.

Inbound: `hs.media.remote_fetcher` is a `RemoteMediaFetcher` (federation/media_fetcher.py) when
federation is configured; until then remote mxc:// URIs answer 404 M_NOT_FOUND. It calls
`GET /_matrix/federation/v1/media/download/{mediaId}` on the origin (the legacy
`/_matrix/media/v3/download` only when the origin answers 404 M_UNRECOGNIZED, as the spec
says), follows a Location part, and writes the bytes to `dest`, stopping with
RemoteTooLarge past `max_size`. The repository makes concurrent requests for one remote
file share a single fetch.

Outbound: the federation server's routes for `/_matrix/federation/v1/media/download/{id}`
and `/thumbnail/{id}` authenticate the X-Matrix request and then call
`serve_federation_media` with a MediaRef from `MediaRepository.federation_file`.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import orjson
from aiohttp import web

from homeserver.media.backends import StreamTooLarge


@dataclass(frozen=True)
class RemoteFile:
    media_type: str
    upload_name: str | None
    length: int


# The remote file is larger than max_upload_size (answered 502 M_TOO_LARGE).
RemoteTooLarge = StreamTooLarge


class RemoteMediaFetcher(Protocol):
    async def fetch(self, origin: str, media_id: str, dest: Path, max_size: int) -> RemoteFile:
        """Downloads remote media into `dest`; raises LookupError if the origin has none."""


async def serve_federation_media(
    request: web.Request,
    media_type: str,
    length: int,
    chunks: AsyncIterator[bytes],
    disposition: str | None = None,
) -> web.StreamResponse:
    """The multipart/mixed body of the federation media endpoints (spec v1.11):
    a JSON metadata part (empty object), then the bytes with their Content-Type and
    Content-Disposition (which carries the file name to the other server)."""
    boundary = secrets.token_hex(16)
    file_headers = f"Content-Type: {media_type}\r\n"
    if disposition:
        file_headers += f"Content-Disposition: {disposition}\r\n"
    head = (
        f"--{boundary}\r\nContent-Type: application/json\r\n\r\n".encode()
        + orjson.dumps({})
        + f"\r\n--{boundary}\r\n{file_headers}\r\n".encode()
    )
    tail = f"\r\n--{boundary}--\r\n".encode()
    resp = web.StreamResponse(
        headers={
            "Content-Type": f"multipart/mixed; boundary={boundary}",
            "Content-Length": str(len(head) + length + len(tail)),
        }
    )
    await resp.prepare(request)
    await resp.write(head)
    async for chunk in chunks:
        await resp.write(chunk)
    await resp.write(tail)
    await resp.write_eof()
    return resp
