"""Fetching remote media over federation (`GET /_matrix/federation/v1/media/download`).

Uses the federation client's resolver, request signing, TLS context and address policy,
but streams the multipart/mixed answer straight into the scratch file (the client's own
send buffers whole responses), stopping past max_upload_size.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from urllib.parse import quote

import aiohttp
from yarl import URL

from federation.discovery import ResolutionError, ip_literal, is_public_address
from federation.request_auth import authorization_header
from homeserver.media.remote import RemoteFile, RemoteTooLarge


class FederationMediaFetcher:
    def __init__(self, client):
        self.client = client

    async def fetch(self, origin: str, media_id: str, dest: Path, max_size: int) -> RemoteFile:
        client = self.client
        if not client.policy.check_outbound(origin):
            raise LookupError("federation with this server is not allowed")
        try:
            resolved = await client.resolver.resolve(origin)
        except ResolutionError as e:
            raise LookupError(str(e)) from None
        uri = f"/_matrix/federation/v1/media/download/{quote(media_id, safe='')}"
        headers = {
            "Host": resolved.host_header,
            "Authorization": authorization_header(
                client.signing_key, client.server_name, origin, "GET", uri, None
            ),
        }
        for host, port in resolved.targets:
            try:
                addresses = await client.resolver.addresses(host, port)
            except ResolutionError:
                continue
            for ip, ip_port in addresses:
                if not client.allow_private and not is_public_address(ip):
                    continue
                ip_host = f"[{ip}]" if ":" in ip else ip
                url = URL(f"https://{ip_host}:{ip_port}{uri}", encoded=True)
                tls_name = resolved.tls_name
                try:
                    async with client._http().get(
                        url,
                        headers=headers,
                        ssl=client._ssl,
                        server_hostname=None if ip_literal(tls_name) else tls_name,
                        timeout=client.timeout,
                        allow_redirects=False,
                    ) as resp:
                        if resp.status != 200:
                            raise LookupError(f"{origin} answered {resp.status}")
                        return await _save_file_part(resp, dest, max_size)
                except (aiohttp.ClientError, TimeoutError):
                    continue
        raise LookupError(f"could not reach {origin}")


async def _save_file_part(resp, dest: Path, max_size: int) -> RemoteFile:
    """Reads the spec's two parts: JSON metadata (ignored), then the file, streamed."""
    reader = aiohttp.MultipartReader(resp.headers, resp.content)
    metadata = await reader.next()
    if metadata is None:
        raise LookupError("multipart response without parts")
    await metadata.release()
    part = await reader.next()
    if part is None or not isinstance(part, aiohttp.BodyPartReader):
        raise LookupError("multipart response without a file part")
    if "Location" in part.headers:
        # Redirects to a CDN are allowed by the spec; not followed yet.
        raise LookupError("remote media is served from another location")
    length = 0
    f = await asyncio.to_thread(open, dest, "wb")
    try:
        while chunk := await part.read_chunk(256 * 1024):
            length += len(chunk)
            if length > max_size:
                raise RemoteTooLarge()
            await asyncio.to_thread(f.write, chunk)
    finally:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(f.close)
    return RemoteFile(
        media_type=part.headers.get("Content-Type", "application/octet-stream"),
        upload_name=None,
        length=length,
    )
