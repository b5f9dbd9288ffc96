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

import logging
import ssl
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from federation.request_auth import authorization_header
from homeserver.http.errors import MatrixError, forbidden
from storage.threepids import ThreepidStore

if TYPE_CHECKING:
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

TIMEOUT = aiohttp.ClientTimeout(total=30)


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

    async def _post(
        self, id_server: str, path: str, body: dict, authorization: str
    ) -> tuple[int, Any]:
        ssl_context: ssl.SSLContext | bool = True
        if self.config.id_servers_insecure_tls:
            ssl_context = ssl.create_default_context()
            ssl_context.check_hostname = False
            ssl_context.verify_mode = ssl.CERT_NONE
        async with aiohttp.ClientSession(
            timeout=TIMEOUT, connector=aiohttp.TCPConnector(ssl=ssl_context)
        ) as session:
            async with session.post(
                f"https://{id_server}{path}",
                data=orjson.dumps(body),
                headers={"Authorization": authorization, "Content-Type": "application/json"},
            ) as resp:
                raw = await resp.read()
        try:
            return resp.status, orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return resp.status, None

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
