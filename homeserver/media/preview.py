"""URL previews: Open Graph data of a page, fetched by the server for a client.

Off unless `media.url_preview_enabled`: a preview tells the linked site who is reading
what, and makes the server an HTTP client that users steer. When on, the server only
ever connects to public addresses: every host is resolved here, every resolved address
checked (loopback, private, link-local, multicast, reserved are refused unless listed in
`media.url_preview_allowed_networks`), and the connection goes to the checked address,
so DNS rebinding cannot swap it. Redirects are followed by hand so each hop is checked.
"""

from __future__ import annotations

import ipaddress
import socket
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver

from homeserver.http.errors import MatrixError

MAX_BODY = 1024 * 1024
MAX_REDIRECTS = 5
TIMEOUT = aiohttp.ClientTimeout(total=15)


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
    parser = _OpenGraph()
    parser.feed(html)
    og = dict(parser.og)
    if parser.title:
        og.setdefault("og:title", parser.title)
    if parser.description:
        og.setdefault("og:description", parser.description)
    # The spec wants og:image as an mxc:// URI of a copy in our repository; until the
    # image is fetched into the repository, no image is offered rather than a third-party
    # URL that every reader's client would fetch.
    return {k: v for k, v in og.items() if not k.startswith("og:image")}


class UrlPreviewer:
    def __init__(self, allowed_networks: tuple[str, ...] = ()):
        self.policy = AddressPolicy(allowed_networks)

    def _check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise MatrixError(400, "M_INVALID_PARAM", "Only http and https URLs can be previewed")
        # IP literals skip resolvers entirely in aiohttp, so they are checked here.
        try:
            ipaddress.ip_address(parts.hostname)
        except ValueError:
            return
        if not self.policy.permits(parts.hostname):
            raise blocked()

    async def preview(self, url: str) -> dict[str, str]:
        connector = aiohttp.TCPConnector(resolver=_CheckingResolver(self.policy))
        async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:
            for _ in range(MAX_REDIRECTS + 1):
                self._check_url(url)
                try:
                    async with session.get(url, allow_redirects=False) as resp:
                        if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                            url = urljoin(url, resp.headers["Location"])
                            continue
                        if resp.status != 200:
                            raise MatrixError(502, "M_UNKNOWN", "The URL could not be fetched")
                        body = await resp.content.read(MAX_BODY)
                        content_type = resp.headers.get("Content-Type", "")
                        return self._describe(url, content_type, body)
                except aiohttp.ClientError:
                    raise MatrixError(502, "M_UNKNOWN", "The URL could not be fetched") from None
        raise MatrixError(502, "M_UNKNOWN", "Too many redirects")

    def _describe(self, url: str, content_type: str, body: bytes) -> dict[str, str]:
        base = content_type.split(";")[0].strip().lower()
        if base in ("text/html", "application/xhtml+xml"):
            return parse_html(body.decode("utf-8", "replace"))
        # Not HTML: what a client can still show.
        return {"og:url": url, "og:type": base or "application/octet-stream"}
