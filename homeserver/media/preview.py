"""URL previews: Open Graph data of a page, fetched by the server for a client.

Off unless `media.url_preview_enabled`: a preview tells the linked site who is reading
what, and makes the server an HTTP client that users steer. When on, the server only
ever connects to public addresses: every host is resolved here, every resolved address
checked (loopback, private, link-local, multicast, reserved are refused unless listed in
`media.url_preview_allowed_networks`), and the connection goes to the checked address,
so DNS rebinding cannot swap it. Redirects are followed by hand so each hop is checked.

The page's og:image is fetched the same way (same checks, a size cap), stored as local
media owned by the server and answered as its mxc:// URI: clients never fetch a third
party's URL. Answers are cached in PostgreSQL for `media.url_preview_cache_s`, and
concurrent requests for one URL share one fetch.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import ssl
import time
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver

from homeserver.http.errors import MatrixError
from homeserver.media.backends import StreamTooLarge, stream_to_file
from homeserver.media.singleflight import SingleFlight
from homeserver.media.thumbnailer import identify_image

logger = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
MAX_REDIRECTS = 5
MAX_URL_LENGTH = 2048
TIMEOUT = aiohttp.ClientTimeout(total=15)
_REDIRECTS = (301, 302, 303, 307, 308)


def domain_allowed(host: str, allowed: tuple[str, ...] | None) -> bool:
    """Whether `host` is one of the `allowed` domains or below one (None: any)."""
    if allowed is None:
        return True
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in allowed)


def blocked(error: str = "URL preview of this address is not allowed") -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", error)


class AddressPolicy:
    def __init__(self, allowed_networks: tuple[str, ...] = ()):
        self.allowed = [ipaddress.ip_network(n, strict=False) for n in allowed_networks]

    def permits(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.allowed):
            return True
        return ip.is_global and not ip.is_multicast


class _CheckingResolver(AbstractResolver):
    """aiohttp resolver that drops the addresses the policy refuses."""

    def __init__(self, policy: AddressPolicy):
        self.policy = policy
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host, port=0, family=socket.AF_INET):
        found = await self._inner.resolve(host, port, family)
        allowed = [r for r in found if self.policy.permits(r["host"])]
        if not allowed:
            raise blocked()
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class _OpenGraph(HTMLParser):
    def __init__(self):
        super().__init__()
        self.og: dict[str, str] = {}
        self.title: str | None = None
        self.description: str | None = None
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "meta":
            prop = a.get("property") or a.get("name") or ""
            content = a.get("content")
            if content is None:
                return
            if prop.startswith("og:") and prop not in self.og:
                self.og[prop] = content[:1000]
            elif prop == "description" and self.description is None:
                self.description = content[:1000]
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_title and self.title is None and data.strip():
            self.title = data.strip()[:1000]


def parse_html(html: str) -> dict[str, str]:
    """The page's Open Graph properties, with <title> and the description meta tag as
    fallbacks for og:title and og:description."""
    parser = _OpenGraph()
    parser.feed(html)
    og = dict(parser.og)
    if parser.title:
        og.setdefault("og:title", parser.title)
    if parser.description:
        og.setdefault("og:description", parser.description)
    return og


def _without_image(og: dict) -> tuple[dict, str | None]:
    """The page's properties minus any og:image ones, and the image URL it names."""
    image = og.get("og:image") or og.get("og:image:secure_url") or og.get("og:image:url")
    rest = {k: v for k, v in og.items() if not (k == "og:image" or k.startswith("og:image:"))}
    return rest, image


async def _read_up_to(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """At most `limit` bytes of a body: one read(n) may return fewer than are coming."""
    parts: list[bytes] = []
    size = 0
    while size < limit and (chunk := await stream.read(limit - size)):
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


def _now_ms() -> int:
    return int(time.time() * 1000)


def fetch_failed() -> MatrixError:
    return MatrixError(502, "M_UNKNOWN", "The URL could not be fetched")


class UrlPreviewService:
    def __init__(self, repo):
        self.repo = repo
        self.config = repo.config
        self.policy = AddressPolicy(self.config.url_preview_allowed_networks)
        ca_bundle = self.config.url_preview_ca_bundle
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(ca_bundle)) if ca_bundle else True
        )
        # url_previews.allowed_domains: None admits any public host.
        self.allowed_domains = repo.hs.config.url_previews.allowed_domains
        self._fetches = SingleFlight(repo.hs.run_in_background)

    @property
    def _period_ms(self) -> int:
        return self.config.url_preview_cache_s * 1000

    async def preview(self, url: str, ts: int | None = None) -> dict:
        """The Open Graph answer for `url`, from the cache while fresh."""
        self._check_url(url)
        bucket = ts // self._period_ms if ts is not None else None
        cached = await self.repo.store.get_preview(url, _now_ms(), bucket)
        if cached is not None:
            return cached
        return await self._fetches.run(url, lambda: self._fetch_and_cache(url))

    async def _fetch_and_cache(self, url: str) -> dict:
        now = _now_ms()
        og, image_media_id = await self._fetch(url)
        og, unused = await self.repo.store.put_preview(
            url, now // self._period_ms, og, image_media_id, now, now + self._period_ms
        )
        for media_id in unused:
            await self.repo.delete_local(media_id)
        return og

    def _check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if len(url) > MAX_URL_LENGTH or parts.scheme not in ("http", "https"):
            raise MatrixError(400, "M_INVALID_PARAM", "Only http and https URLs can be previewed")
        if not parts.hostname:
            raise MatrixError(400, "M_INVALID_PARAM", "Only http and https URLs can be previewed")
        if not domain_allowed(parts.hostname, self.allowed_domains):
            raise blocked("URL previews of this domain are not allowed")
        # IP literals skip resolvers entirely in aiohttp, so they are checked here.
        try:
            ipaddress.ip_address(parts.hostname)
        except ValueError:
            return
        if not self.policy.permits(parts.hostname):
            raise blocked()

    @asynccontextmanager
    async def _get(self, session: aiohttp.ClientSession, url: str):
        """(response, final URL) after following redirects by hand, each hop checked."""
        for _ in range(MAX_REDIRECTS + 1):
            self._check_url(url)
            resp = await session.get(url, allow_redirects=False)
            if resp.status in _REDIRECTS and "Location" in resp.headers:
                url = urljoin(url, resp.headers["Location"])
                resp.release()
                continue
            try:
                yield resp, url
            finally:
                resp.release()
            return
        raise MatrixError(502, "M_UNKNOWN", "Too many redirects")

    async def _fetch(self, url: str) -> tuple[dict, str | None]:
        """Fetches the page (and its image); (Open Graph answer, image media ID)."""
        connector = aiohttp.TCPConnector(resolver=_CheckingResolver(self.policy), ssl=self._ssl)
        async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:
            try:
                async with self._get(session, url) as (resp, final_url):
                    if resp.status != 200:
                        raise fetch_failed()
                    base = resp.content_type.lower()
                    if base.startswith("image/"):
                        # The URL is an image itself: it is the preview's image.
                        return await self._image_answer(resp, {})
                    if base not in ("text/html", "application/xhtml+xml"):
                        # Not HTML: what a client can still show.
                        og = {"og:url": final_url, "og:type": base or "application/octet-stream"}
                        return og, None
                    body = await _read_up_to(resp.content, MAX_BODY)
                    og = parse_html(body.decode(_charset(resp), "replace"))
            except (aiohttp.ClientError, TimeoutError):
                raise fetch_failed() from None
            og, image_url = _without_image(og)
            if image_url is None:
                return og, None
            try:
                async with self._get(session, urljoin(final_url, image_url)) as (resp, _):
                    if resp.status == 200:
                        return await self._image_answer(resp, og)
            except (aiohttp.ClientError, TimeoutError, MatrixError):
                # The page is still worth previewing without its image.
                logger.debug("preview image not fetched")
            return og, None

    async def _image_answer(self, resp, og: dict) -> tuple[dict, str | None]:
        """Stores the image in `resp` as server-owned media; `og` with its mxc:// URI,
        size and type, or `og` unchanged if it is not an acceptable image."""
        repo = self.repo
        limit = min(self.config.url_preview_max_image_size, self.config.max_upload_size)
        if resp.content_length is not None and resp.content_length > limit:
            return og, None
        path = repo.scratch_file("preview")
        try:
            length, sha256 = await stream_to_file(path, resp.content.read, limit)
        except StreamTooLarge:
            return og, None
        try:
            found = await asyncio.to_thread(identify_image, path, self.config.max_thumbnail_pixels)
            if found is None:
                return og, None
            media_type, width, height = found
            media_id = await repo.store_server_media(path, media_type, length, sha256)
        finally:
            await repo.discard(path)  # already moved into the store when kept
        return {
            **og,
            "og:image": f"mxc://{repo.server_name}/{media_id}",
            "og:image:type": media_type,
            "og:image:width": width,
            "og:image:height": height,
            "matrix:image:size": length,
        }, media_id


def _charset(resp: aiohttp.ClientResponse) -> str:
    charset = resp.charset or "utf-8"
    try:
        "".encode(charset)
    except LookupError:
        return "utf-8"
    return charset
