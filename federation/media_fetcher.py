"""Fetching remote media over federation (server-server API, "Content Repository").

Order, as the spec says: the authenticated `GET /_matrix/federation/v1/media/download/{id}`
first; only when the origin answers 404 M_UNRECOGNIZED (it predates v1.11) the legacy
`GET /_matrix/media/v3/download/{origin}/{id}?allow_remote=false`.

The federation answer is multipart/mixed: JSON metadata, then either the bytes or a
`Location` header pointing elsewhere (a CDN). Locations and HTTP redirects are followed
by hand, at most MAX_REDIRECTS hops, each to an https URL whose addresses are checked as
every federation connection's are (no private or loopback addresses unless
`federation.allow_private_addresses`), and each without our request signature.

Uses the federation client's resolver, signing, TLS context and address policy, but
streams bytes straight into the scratch file (the client's own `request` buffers whole
answers), stopping with RemoteTooLarge past max_size and keeping no partial file.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

import aiohttp
import orjson
from yarl import URL

from federation.client import FederationError, read_capped
from federation.discovery import ResolutionError, ip_literal, is_public_address
from federation.request_auth import authorization_header
from homeserver.media.backends import stream_to_file
from homeserver.media.headers import valid_filename
from homeserver.media.remote import RemoteFile, RemoteTooLarge

MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
# Media can be large: a long overall bound, but a stalled connection is dropped quickly.
MEDIA_TIMEOUT = aiohttp.ClientTimeout(total=600, connect=10, sock_read=30)
_MAX_ERROR_BODY = 64 * 1024


class FederationMediaFetcher:
    def __init__(self, client):
        self.client = client

    async def fetch(self, origin: str, media_id: str, dest: Path, max_size: int) -> RemoteFile:
        try:
            return await self._fetch(origin, media_id, dest, max_size)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            # Connection lost mid-body, malformed multipart, bad URL: the origin has
            # nothing usable for us now.
            raise LookupError(f"fetching from {origin} failed: {type(e).__name__}") from None

    async def _fetch(self, origin: str, media_id: str, dest: Path, max_size: int) -> RemoteFile:
        client = self.client
        if not client.policy.check_outbound(origin):
            raise LookupError("federation with this server is not allowed")
        try:
            resolved = await client.resolver.resolve(origin)
        except ResolutionError as e:
            raise LookupError(str(e)) from None
        media = quote(media_id, safe="")

        uri = f"/_matrix/federation/v1/media/download/{media}"
        async with await self._signed_get(origin, resolved, uri) as resp:
            if resp.status == 200:
                found = await _from_multipart(resp, dest, max_size)
            elif await _unrecognized(resp):
                found = None
            else:
                raise LookupError(f"{origin} answered {resp.status}")
        if isinstance(found, RemoteFile):
            return found
        if found is not None:
            return await self._follow(found, dest, max_size)

        # The legacy endpoint, for origins without authenticated media. allow_remote=false
        # stops the origin from fetching on our behalf (the spec requires it).
        uri = f"/_matrix/media/v3/download/{quote(origin, safe='')}/{media}"
        uri += "?allow_remote=false&allow_redirect=true"
        async with await self._signed_get(origin, resolved, uri) as resp:
            location = _redirect_target(resp)
            if location is None:
                return await _from_plain(resp, dest, max_size)
        base = f"https://{resolved.host_header}{uri}"
        return await self._follow(urljoin(base, location), dest, max_size)

    # --- connections -------------------------------------------------------------------

    def _allowed(self, ip: str) -> bool:
        return self.client.allow_private or is_public_address(ip)

    async def _signed_get(self, origin: str, resolved, uri: str) -> aiohttp.ClientResponse:
        """GET `uri` from the origin, X-Matrix signed, trying each address in turn."""
        client = self.client
        headers = {
            "Host": resolved.host_header,
            "Authorization": authorization_header(
                client.signing_key, client.server_name, origin, "GET", uri, None
            ),
        }
        tls_name = resolved.tls_name
        for host, port in resolved.targets:
            resp = await self._connect(host, port, uri, headers, tls_name)
            if resp is not None:
                return resp
        raise LookupError(f"could not reach {origin}")

    async def _connect(
        self, host: str, port: int, uri: str, headers: dict, tls_name: str
    ) -> aiohttp.ClientResponse | None:
        """The first answer from an allowed address of host:port, over verified TLS."""
        client = self.client
        try:
            addresses = await client.resolver.addresses(host, port)
        except ResolutionError:
            return None
        for ip, ip_port in addresses:
            if not self._allowed(ip):
                continue
            ip_host = f"[{ip}]" if ":" in ip else ip
            try:
                return await client._http().get(
                    URL(f"https://{ip_host}:{ip_port}{uri}", encoded=True),
                    headers=headers,
                    ssl=client._ssl,
                    server_hostname=None if ip_literal(tls_name) else tls_name,
                    timeout=MEDIA_TIMEOUT,
                    allow_redirects=False,
                )
            except (aiohttp.ClientError, TimeoutError):
                continue
        return None

    async def _follow(self, url: str, dest: Path, max_size: int) -> RemoteFile:
        """Downloads from `url` (a Location the origin gave), following redirects."""
        for _ in range(MAX_REDIRECTS):
            parts = urlsplit(url)
            # https only: the origin's answer came over verified TLS and a redirect must
            # not downgrade it. No user:password@ (never sent anywhere by us).
            if parts.scheme != "https" or not parts.hostname or "@" in parts.netloc:
                raise LookupError("refusing to follow a non-https media location")
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            resp = await self._connect(
                parts.hostname, parts.port or 443, path, {"Host": parts.netloc}, parts.hostname
            )
            if resp is None:
                raise LookupError("media location unreachable")
            async with resp:
                location = _redirect_target(resp)
                if location is None:
                    return await _from_plain(resp, dest, max_size)
            url = urljoin(url, location)
        raise LookupError("too many redirects for remote media")


# --- answers ---------------------------------------------------------------------------


def _redirect_target(resp: aiohttp.ClientResponse) -> str | None:
    if resp.status in _REDIRECTS:
        return resp.headers.get("Location")
    return None


async def _unrecognized(resp: aiohttp.ClientResponse) -> bool:
    """Whether the origin does not know the federation media endpoint (404 M_UNRECOGNIZED)."""
    if resp.status != 404:
        return False
    try:
        error = orjson.loads(await read_capped(resp.content, _MAX_ERROR_BODY, resp.status))
    except (FederationError, orjson.JSONDecodeError):
        return False
    return isinstance(error, dict) and error.get("errcode") == "M_UNRECOGNIZED"


async def _from_multipart(resp, dest: Path, max_size: int) -> RemoteFile | str:
    """The spec's two parts: JSON metadata (ignored), then the file (streamed into `dest`)
    or a `Location` (returned)."""
    if not resp.content_type.startswith("multipart/"):
        raise LookupError("federation media answer is not multipart")
    reader = aiohttp.MultipartReader(resp.headers, resp.content)
    metadata = await reader.next()
    if metadata is None:
        raise LookupError("multipart response without parts")
    await metadata.release()
    part = await reader.next()
    if part is None or not isinstance(part, aiohttp.BodyPartReader):
        raise LookupError("multipart response without a file part")
    if "Location" in part.headers:
        return part.headers["Location"]
    _check_declared(part.headers, max_size)
    length, _ = await stream_to_file(dest, part.read_chunk, max_size)
    return RemoteFile(
        media_type=part.headers.get("Content-Type", "application/octet-stream"),
        upload_name=_filename(part.filename),
        length=length,
    )


async def _from_plain(resp: aiohttp.ClientResponse, dest: Path, max_size: int) -> RemoteFile:
    """A plain download answer: bytes with Content-Type and Content-Disposition."""
    if resp.status != 200:
        raise LookupError(f"media download answered {resp.status}")
    _check_declared(resp.headers, max_size)
    length, _ = await stream_to_file(dest, resp.content.read, max_size)
    disposition = resp.content_disposition
    return RemoteFile(
        media_type=resp.headers.get("Content-Type", "application/octet-stream"),
        upload_name=_filename(disposition.filename if disposition else None),
        length=length,
    )


def _check_declared(headers, max_size: int) -> None:
    declared = headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_size:
        raise RemoteTooLarge()


def _filename(name: str | None) -> str | None:
    return name if name and valid_filename(name) else None
