"""Server name resolution, as the spec's "Resolving server names" says.

1. An IP literal: that address, the given port or 8448.
2. A hostname with an explicit port: that host and port.
3. /.well-known/matrix/server on the hostname (cached): the delegated name is resolved
   by the same steps (IP literal, explicit port, SRV, 8448), without a second well-known.
4. SRV _matrix-fed._tcp.<hostname>, then the deprecated _matrix._tcp.<hostname>.
5. The hostname on port 8448.

The Host header and the TLS certificate name are the server name's host (or the
delegated one), never an SRV target. Addresses come from `resolve_overrides` (test/ops
only), else from the system resolver.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from federation.policy import split_server_name

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8448
WELL_KNOWN_DEFAULT_TTL = 24 * 3600
WELL_KNOWN_MAX_TTL = 48 * 3600
WELL_KNOWN_ERROR_TTL = 3600

_VALID_NAME = re.compile(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")


class ResolutionError(Exception):
    pass


@dataclass(frozen=True)
class ResolvedServer:
    host_header: str  # the Host header: the server name, or the delegated name
    tls_name: str  # the name the certificate must be valid for
    targets: tuple[tuple[str, int], ...]  # (hostname or IP literal, port), in order of preference


def ip_literal(host: str) -> str | None:
    """The address if `host` is an IP literal ("1.2.3.4" or "[::1]"), else None."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def parse_cache_control(value: str | None) -> int:
    """Seconds to keep a well-known answer: max-age, capped; the default without one."""
    if value:
        if "no-store" in value or "no-cache" in value:
            return 0
        m = re.search(r"max-age=(\d+)", value)
        if m:
            return min(int(m.group(1)), WELL_KNOWN_MAX_TTL)
    return WELL_KNOWN_DEFAULT_TTL


class SrvLookup:
    """SRV records through dnspython's asyncio resolver, ordered by priority then weight."""

    def __init__(self):
        self._resolver = None

    async def __call__(self, name: str) -> list[tuple[str, int]]:
        import dns.asyncresolver
        import dns.exception
        import dns.resolver

        try:
            if self._resolver is None:
                self._resolver = dns.asyncresolver.Resolver()
            answer = await self._resolver.resolve(name, "SRV")
        except (dns.exception.DNSException, OSError) as e:
            logger.debug("no SRV record %s: %s", name, type(e).__name__)
            return []
        records = sorted(answer, key=lambda r: (r.priority, -r.weight))
        return [(r.target.to_text(omit_final_dot=True), r.port) for r in records if r.port]


# (hostname) -> (delegated server name or None, seconds to cache)
WellKnownFetcher = Callable[[str], Awaitable[tuple[str | None, int]]]
SrvResolver = Callable[[str], Awaitable[list[tuple[str, int]]]]


class ServerResolver:
    def __init__(
        self,
        fetch_well_known: WellKnownFetcher,
        srv: SrvResolver | None = None,
        overrides: dict[str, str] | None = None,
    ):
        self._fetch_well_known = fetch_well_known
        self._srv = srv or SrvLookup()
        self._overrides = {k.lower(): v for k, v in (overrides or {}).items()}
        self._well_known_cache: dict[str, tuple[str | None, float]] = {}

    async def resolve(self, server_name: str) -> ResolvedServer:
        if not _VALID_NAME.fullmatch(server_name):
            raise ResolutionError(f"invalid server name {server_name!r}")
        host, port = split_server_name(server_name)
        if ip_literal(host) or port is not None:
            return self._direct(server_name, host, port)
        delegated = await self._well_known(host)
        if delegated is not None:
            if not _VALID_NAME.fullmatch(delegated):
                raise ResolutionError("invalid delegated server name")
            d_host, d_port = split_server_name(delegated)
            if ip_literal(d_host) or d_port is not None:
                return self._direct(delegated, d_host, d_port)
            return await self._by_srv(d_host)
        return await self._by_srv(host)

    @staticmethod
    def _direct(name: str, host: str, port: int | None) -> ResolvedServer:
        literal = ip_literal(host)
        return ResolvedServer(name, literal or host, ((host, port or DEFAULT_PORT),))

    async def _by_srv(self, host: str) -> ResolvedServer:
        for prefix in ("_matrix-fed._tcp.", "_matrix._tcp."):
            records = await self._srv(prefix + host)
            if records:
                return ResolvedServer(host, host, tuple(records))
        return ResolvedServer(host, host, ((host, DEFAULT_PORT),))

    async def _well_known(self, host: str) -> str | None:
        cached = self._well_known_cache.get(host)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        try:
            delegated, ttl = await self._fetch_well_known(host)
        except Exception as e:  # any failure means "no delegation", cached for a while
            logger.info("no usable well-known for %s: %s", host, type(e).__name__)
            delegated, ttl = None, WELL_KNOWN_ERROR_TTL
        self._well_known_cache[host] = (delegated, time.monotonic() + ttl)
        return delegated

    async def addresses(self, host: str, port: int) -> list[tuple[str, int]]:
        """The IP addresses to connect to for one target, overrides first."""
        override = self._overrides.get(host.lower())
        if override is not None:
            return [(override, port)]
        literal = ip_literal(host)
        if literal:
            return [(literal, port)]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except OSError as e:
            raise ResolutionError(f"cannot resolve {host}: {e.strerror}") from None
        seen: list[tuple[str, int]] = []
        for _family, _type, _proto, _canon, sockaddr in infos:
            addr = (str(sockaddr[0]), port)
            if addr not in seen:
                seen.append(addr)
        return seen


def is_public_address(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return not (
        addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
    )
