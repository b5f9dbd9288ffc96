"""Binding addresses at identity servers for users (spec client-server-api
"/account/3pid/bind" and "/account/3pid/unbind"; identity-service-api v2 /3pid/bind and
/3pid/unbind).

Only the identity servers the operator lists (`identity.id_servers`) are contacted; with
none (the default) binding is refused and nothing leaves this server. Each binding made
through us is remembered (id_server_bindings), so that removing the address
(/account/3pid/delete, /unbind) or closing the account asks those servers to unbind it.
A bind goes with the user's identity-server access token; an unbind is signed by this
server, X-Matrix, as the spec asks.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import orjson

from federation.request_auth import authorization_header
from homeserver.http.errors import MatrixError, forbidden
from storage.threepids import ThreepidStore

if TYPE_CHECKING:
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

TIMEOUT = aiohttp.ClientTimeout(total=30)
# A key validity check is made while a join or an invite waits on it.
VALIDITY_TIMEOUT = aiohttp.ClientTimeout(total=10)


class IdentityServerError(Exception):
    """The identity server could not be reached or gave no usable answer."""


def lookup_hash(medium: str, address: str, pepper: str) -> str:
    """identity-service-api "Client behaviour" sha256: unpadded URL-safe base64 of
    sha256("{address} {medium} {pepper}")."""
    digest = hashlib.sha256(f"{address} {medium} {pepper}".encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class IdentityServers:
    def __init__(self, hs: Homeserver, store: ThreepidStore):
        self.hs = hs
        self.store = store
        self.config = hs.config.identity

    def allowed(self, id_server: str) -> bool:
        """Listed in identity.id_servers, as is or by its host alone (any port)."""
        host, _, port = id_server.rpartition(":")
        listed = self.config.id_servers
        return id_server in listed or (port.isdigit() and host in listed)

    def check_allowed(self, id_server: str) -> None:
        if not self.allowed(id_server):
            raise forbidden("This server does not contact that identity server")

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self.config.id_servers_insecure_tls:
            return True
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    async def _request(
        self,
        method: str,
        url: str,
        *,
        body: dict | None = None,
        authorization: str | None = None,
        params: dict[str, str] | None = None,
        timeout: aiohttp.ClientTimeout = TIMEOUT,
    ) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if authorization is not None:
            headers["Authorization"] = authorization
        async with aiohttp.ClientSession(
            timeout=timeout, connector=aiohttp.TCPConnector(ssl=self._ssl())
        ) as session:
            async with session.request(
                method,
                url,
                data=orjson.dumps(body) if body is not None else None,
                headers=headers,
                params=params,
                allow_redirects=False,
            ) as resp:
                raw = await resp.content.read(1 << 20)
        try:
            return resp.status, orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return resp.status, None

    async def _post(
        self, id_server: str, path: str, body: dict, authorization: str
    ) -> tuple[int, Any]:
        return await self._request(
            "POST", f"https://{id_server}{path}", body=body, authorization=authorization
        )

    async def _ask(
        self, id_server: str, method: str, path: str, token: str, body: dict | None = None
    ) -> dict[str, Any]:
        """A v2 request with the user's identity access token: the answer's JSON object,
        or IdentityServerError (unreachable, refused, or not an object)."""
        try:
            status, answer = await self._request(
                method, f"https://{id_server}{path}", body=body, authorization=f"Bearer {token}"
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            logger.info("identity server %r unreachable: %s", id_server, e)
            raise IdentityServerError("unreachable") from None
        if status != 200 or not isinstance(answer, dict):
            logger.info("identity server %r answered %s to %s", id_server, status, path)
            raise IdentityServerError(f"status {status}")
        return answer

    async def lookup(self, id_server: str, token: str, medium: str, address: str) -> str | None:
        """The Matrix ID bound to the address at `id_server` (v2 hash_details, then a sha256
        lookup; "none" only when the server offers nothing else), or None."""
        self.check_allowed(id_server)
        details = await self._ask(id_server, "GET", "/_matrix/identity/v2/hash_details", token)
        algorithms, pepper = details.get("algorithms"), details.get("lookup_pepper")
        if not isinstance(algorithms, list) or not isinstance(pepper, str):
            raise IdentityServerError("hash_details without algorithms or pepper")
        if "sha256" in algorithms:
            key = lookup_hash(medium, address, pepper)
            body = {"addresses": [key], "algorithm": "sha256", "pepper": pepper}
        elif "none" in algorithms:
            key = f"{address} {medium}"
            body = {"addresses": [key], "algorithm": "none", "pepper": pepper}
        else:
            raise IdentityServerError("no lookup algorithm in common")
        answer = await self._ask(id_server, "POST", "/_matrix/identity/v2/lookup", token, body)
        mappings = answer.get("mappings")
        mxid = mappings.get(key) if isinstance(mappings, dict) else None
        return mxid if isinstance(mxid, str) else None

    async def store_invite(self, id_server: str, token: str, body: dict) -> dict[str, Any]:
        """/v2/store-invite: the invite's token, display name and public keys."""
        self.check_allowed(id_server)
        return await self._ask(id_server, "POST", "/_matrix/identity/v2/store-invite", token, body)

    async def key_is_valid(self, key_validity_url: str, public_key: str) -> bool:
        """Whether the identity server behind `key_validity_url` (https, one the operator
        lists) still says `public_key` is valid. Unreachable or unlisted: not valid."""
        try:
            url = urlsplit(key_validity_url)
            netloc = url.netloc
        except ValueError:
            return False
        if url.scheme != "https" or not netloc or "@" in netloc or not self.allowed(netloc):
            logger.info("key validity URL on %r: not a listed identity server", netloc)
            return False
        try:
            status, answer = await self._request(
                "GET",
                key_validity_url,
                params={"public_key": public_key},
                timeout=VALIDITY_TIMEOUT,
            )
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
            logger.info("identity server %r unreachable: %s", netloc, e)
            return False
        return status == 200 and isinstance(answer, dict) and answer.get("valid") is True

    async def bind(
        self, user_id: str, id_server: str, id_access_token: str, sid: str, client_secret: str
    ) -> None:
        """Asks the identity server to bind the address it validated in session `sid` to
        `user_id`, and remembers where it was bound."""
        self.check_allowed(id_server)
        body = {"sid": sid, "client_secret": client_secret, "mxid": user_id}
        try:
            status, answer = await self._post(
                id_server, "/_matrix/identity/v2/3pid/bind", body, f"Bearer {id_access_token}"
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            logger.info("identity server %r unreachable: %s", id_server, e)
            raise MatrixError(
                502, "M_UNKNOWN", "The identity server could not be reached"
            ) from None
        if status != 200 or not isinstance(answer, dict):
            errcode = answer.get("errcode") if isinstance(answer, dict) else None
            raise MatrixError(
                400 if status < 500 else 502,
                errcode if isinstance(errcode, str) else "M_UNKNOWN",
                "The identity server refused the binding",
            )
        medium, address = answer.get("medium"), answer.get("address")
        if not isinstance(medium, str) or not isinstance(address, str):
            raise MatrixError(502, "M_UNKNOWN", "The identity server answered without the address")
        await self.store.remember_id_server_binding(user_id, medium, address, id_server)

    async def unbind(self, user_id: str, medium: str, address: str, id_server: str | None) -> bool:
        """Asks `id_server` (None: every server the address was bound at through us) to
        unbind it; True when there was one and all of them did."""
        if id_server is not None:
            # One we may not contact is left alone, as if the address was not bound there.
            servers = [id_server] if self.allowed(id_server) else []
        else:
            bound_at = await self.store.id_servers_bound_at(user_id, medium, address)
            servers = [s for s in bound_at if self.allowed(s)]
        if not servers:
            return False
        done = True
        for server in servers:
            if await self._unbind_at(server, user_id, medium, address):
                await self.store.forget_id_server_binding(user_id, medium, address, server)
            else:
                done = False
        return done

    async def _unbind_at(self, id_server: str, user_id: str, medium: str, address: str) -> bool:
        path = "/_matrix/identity/v2/3pid/unbind"
        body = {"mxid": user_id, "threepid": {"medium": medium, "address": address}}
        header = authorization_header(
            self.hs.signing_key, self.hs.server_name, id_server, "POST", path, body
        )
        try:
            status, _ = await self._post(id_server, path, body, header)
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            logger.info("identity server %r unreachable: %s", id_server, e)
            return False
        # 404: not (or no longer) bound there, which is what was asked.
        return status in (200, 404)

    async def unbind_all(self, user_id: str) -> bool:
        """Every binding made through us for a closing account; True if all went."""
        addresses = await self.store.id_server_bound_addresses(user_id)
        results = [
            await self.unbind(user_id, medium, address, None) for medium, address in addresses
        ]
        return bool(results) and all(results)
