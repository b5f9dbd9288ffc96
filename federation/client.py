"""The outbound federation HTTP client.

Every request: the destination must be admitted by policy (checked before anything
touches the network), its name is resolved as the spec says, private and loopback
addresses are refused unless `federation.allow_private_addresses`, TLS is verified,
the request carries an X-Matrix signature, and each attempt has a timeout.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson
from yarl import URL

from federation.discovery import (
    ResolutionError,
    ServerResolver,
    ip_literal,
    is_public_address,
    parse_cache_control,
)
from federation.errors import FederationError
from federation.policy import ServerPolicy
from federation.request_auth import authorization_header
from federation.tls import client_context
from homeserver.config import FederationConfig

logger = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 10 * 1024 * 1024
WELL_KNOWN_MAX_BYTES = 50 * 1024


async def read_capped(stream: aiohttp.StreamReader, max_bytes: int, status: int) -> bytes:
    """The whole body, up to `max_bytes`. One `read(n)` returns as soon as some bytes are
    buffered, so a body that arrives in several TCP segments needs a loop to EOF."""
    parts: list[bytes] = []
    total = 0
    while chunk := await stream.read(64 * 1024):
        total += len(chunk)
        if total > max_bytes:
            raise FederationError("response too large", status)
        parts.append(chunk)
    return b"".join(parts)


class FederationClient:
    def __init__(
        self, server_name: str, signing_key, policy: ServerPolicy, config: FederationConfig
    ):
        self.server_name = server_name
        self.signing_key = signing_key
        self.policy = policy
        self.allow_private = config.allow_private_addresses
        self.timeout = aiohttp.ClientTimeout(total=config.request_timeout_s, connect=10)
        self._ssl = client_context(config)
        self.resolver = ServerResolver(
            self._fetch_well_known, overrides=dict(config.resolve_overrides)
        )
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Created lazily: a session must be made inside the running loop.
            self._session = aiohttp.ClientSession(auto_decompress=True)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get_json(self, destination: str, path: str, query: dict | None = None) -> Any:
        return await self.request("GET", destination, path, query=query)

    async def post_json(self, destination: str, path: str, content: Any, query=None) -> Any:
        return await self.request("POST", destination, path, query=query, content=content)

    async def put_json(self, destination: str, path: str, content: Any, query=None) -> Any:
        return await self.request("PUT", destination, path, query=query, content=content)

    async def request(
        self,
        method: str,
        destination: str,
        path: str,
        *,
        query: dict | None = None,
        content: Any = None,
    ) -> Any:
        """`path` is already percent-encoded (callers quote path parameters)."""
        if not self.policy.check_outbound(destination):
            raise FederationError(f"federation with {destination} is not allowed")
        try:
            resolved = await self.resolver.resolve(destination)
        except ResolutionError as e:
            raise FederationError(str(e)) from None
        uri = path + ("?" + urlencode(query, doseq=True, quote_via=quote) if query else "")
        headers = {
            "Host": resolved.host_header,
            "Authorization": authorization_header(
                self.signing_key, self.server_name, destination, method, uri, content
            ),
        }
        body = None
        if content is not None:
            body = orjson.dumps(content)
            headers["Content-Type"] = "application/json"
        status, payload, _headers = await self._send(
            method, resolved.targets, resolved.tls_name, uri, headers, body, MAX_RESPONSE_BYTES
        )
        try:
            data = orjson.loads(payload) if payload else None
        except orjson.JSONDecodeError:
            raise FederationError(f"{destination} answered with non-JSON", status) from None
        if status >= 300:
            raise FederationError(f"{destination} answered {status}", status, data)
        return data

    async def _send(
        self,
        method: str,
        targets: tuple[tuple[str, int], ...],
        tls_name: str,
        uri: str,
        headers: dict[str, str],
        body: bytes | None,
        max_bytes: int,
    ) -> tuple[int, bytes, dict]:
        """Tries each address of each target in turn until one answers."""
        last_error = "no usable address"
        for host, port in targets:
            try:
                addresses = await self.resolver.addresses(host, port)
            except ResolutionError as e:
                last_error = str(e)
                continue
            for ip, ip_port in addresses:
                if not self.allow_private and not is_public_address(ip):
                    last_error = f"refusing private address for {host}"
                    continue
                ip_host = f"[{ip}]" if ":" in ip else ip
                url = URL(f"https://{ip_host}:{ip_port}{uri}", encoded=True)
                try:
                    async with self._http().request(
                        method,
                        url,
                        headers=headers,
                        data=body,
                        ssl=self._ssl,
                        server_hostname=None if ip_literal(tls_name) else tls_name,
                        timeout=self.timeout,
                        allow_redirects=False,
                    ) as resp:
                        payload = await read_capped(resp.content, max_bytes, resp.status)
                        return resp.status, payload, dict(resp.headers)
                except (aiohttp.ClientError, TimeoutError) as e:
                    last_error = f"{type(e).__name__} connecting to {host}:{port}"
                    logger.info("federation request failed: %s", last_error)
        raise FederationError(last_error)

    async def _fetch_well_known(self, host: str) -> tuple[str | None, int]:
        """GET https://<host>/.well-known/matrix/server (unsigned, port 443)."""
        status, payload, headers = await self._send(
            "GET",
            ((host, 443),),
            host,
            "/.well-known/matrix/server",
            {"Host": host},
            None,
            WELL_KNOWN_MAX_BYTES,
        )
        ttl = parse_cache_control(headers.get("Cache-Control"))
        if status != 200:
            return None, min(ttl, 3600)
        data = orjson.loads(payload)
        server = data.get("m.server") if isinstance(data, dict) else None
        if not isinstance(server, str) or not server:
            return None, min(ttl, 3600)
        return server, ttl
