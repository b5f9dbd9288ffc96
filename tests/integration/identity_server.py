"""A fake identity server over https on loopback, for the tests that need one: binds and
unbinds (identity-service /3pid/bind, /3pid/unbind), v2 lookups (hash_details, sha256
lookup), invitation storage (/store-invite), key validity (/pubkey/isvalid), and the
onbind call an identity server makes to a homeserver when an address becomes bound.

Servers reach it as `ids.name` (127.0.0.1:PORT), with `identity.id_servers:
["127.0.0.1"]` and `id_servers_insecure_tls: true` (its certificate is from a CA of its
own)."""

from __future__ import annotations

import base64
import hashlib
import itertools
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json

from tests.federation_ca import TestCA

ID_TOKEN = "id-access-token"
PEPPER = "matrixrocks"
_tokens = itertools.count(1)


class IdentityServer:
    """Binds what it is asked to, records unbinds, lookups and stored invites."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path = tmp_path
        self.bound: dict[str, str] = {}  # address -> mxid
        self.unbinds: list[tuple[dict, str]] = []  # (body, Authorization)
        self.lookups = 0
        self.invites: list[dict[str, Any]] = []  # store-invite bodies, with their token
        self.runner: web.AppRunner | None = None
        self.name = ""
        self.validity_host: str | None = None  # where key_validity_url points (self.name)
        self.rotate_keys()

    def rotate_keys(self) -> None:
        """New keys: what was signed with the old ones is no longer valid (revoked)."""
        self.key = generate_signing_key("0")
        self.ephemeral_key = generate_signing_key("0")

    def public_key(self, ephemeral: bool = False) -> str:
        key = self.ephemeral_key if ephemeral else self.key
        return encode_verify_key_base64(get_verify_key(key))

    def sign(self, obj: dict[str, Any], *, ephemeral: bool = False) -> dict[str, Any]:
        return sign_json(obj, self.name, self.ephemeral_key if ephemeral else self.key)

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {ID_TOKEN}"

    @staticmethod
    def _unauthorised() -> web.Response:
        return web.json_response({"errcode": "M_UNAUTHORIZED"}, status=401)

    async def _bind(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._unauthorised()
        body = await request.json()
        address = f"{body['sid']}@example.org"  # the address validated in session sid
        self.bound[address] = body["mxid"]
        return web.json_response({"medium": "email", "address": address, "mxid": body["mxid"]})

    async def _unbind(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.unbinds.append((body, request.headers.get("Authorization", "")))
        address = body["threepid"]["address"]
        if self.bound.get(address) != body["mxid"]:
            return web.Response(status=404)
        del self.bound[address]
        return web.json_response({})

    async def _hash_details(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._unauthorised()
        return web.json_response({"lookup_pepper": PEPPER, "algorithms": ["none", "sha256"]})

    @staticmethod
    def _hash(address: str) -> str:
        digest = hashlib.sha256(f"{address} email {PEPPER}".encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    async def _lookup(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._unauthorised()
        body = await request.json()
        self.lookups += 1
        if body.get("algorithm") != "sha256" or body.get("pepper") != PEPPER:
            return web.json_response({"errcode": "M_INVALID_PEPPER"}, status=400)
        by_hash = {self._hash(a): mxid for a, mxid in self.bound.items()}
        mappings = {h: by_hash[h] for h in body["addresses"] if h in by_hash}
        return web.json_response({"mappings": mappings})

    async def _store_invite(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._unauthorised()
        body = await request.json()
        token = f"tok{next(_tokens)}"
        self.invites.append({**body, "token": token})
        url = f"https://{self.validity_host or self.name}/_matrix/identity/v2/pubkey/isvalid"
        return web.json_response(
            {
                "token": token,
                "display_name": "Bob",
                "public_keys": [
                    {"public_key": self.public_key(), "key_validity_url": url},
                    {"public_key": self.public_key(ephemeral=True), "key_validity_url": url},
                ],
            }
        )

    async def _isvalid(self, request: web.Request) -> web.Response:
        current = {self.public_key(), self.public_key(ephemeral=True)}
        return web.json_response({"valid": request.query.get("public_key") in current})

    async def onbind(
        self,
        base_url: str,
        address: str,
        mxid: str,
        *,
        after_signing: Callable[[], Awaitable[None]] | None = None,
    ) -> tuple[int, Any]:
        """Binds `address` to `mxid` and tells the homeserver at `base_url` (its client
        listener) of the invites pending for the address, each signed by the current key.
        `after_signing` runs between signing and the call (to revoke the key, or stop)."""
        self.bound[address] = mxid
        invites = []
        for stored in self.invites:
            if stored["address"] != address:
                continue
            signed = self.sign({"mxid": mxid, "token": stored["token"]})
            invites.append(
                {
                    "medium": "email",
                    "address": address,
                    "mxid": mxid,
                    "room_id": stored["room_id"],
                    "sender": stored["sender"],
                    "signed": signed,
                }
            )
        body = self.sign({"medium": "email", "address": address, "mxid": mxid, "invites": invites})
        if after_signing is not None:
            await after_signing()
        async with aiohttp.ClientSession() as http:
            async with http.post(
                base_url.rstrip("/") + "/_matrix/federation/v1/3pid/onbind", json=body
            ) as resp:
                return resp.status, await resp.json(content_type=None)

    async def start(self) -> None:
        ca = TestCA(self.tmp_path / "idca", "Identity Test CA")
        cert, key = ca.issue("127.0.0.1")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        app = web.Application()
        app.router.add_post("/_matrix/identity/v2/3pid/bind", self._bind)
        app.router.add_post("/_matrix/identity/v2/3pid/unbind", self._unbind)
        app.router.add_get("/_matrix/identity/v2/hash_details", self._hash_details)
        app.router.add_post("/_matrix/identity/v2/lookup", self._lookup)
        app.router.add_post("/_matrix/identity/v2/store-invite", self._store_invite)
        app.router.add_get("/_matrix/identity/v2/pubkey/isvalid", self._isvalid)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        self.name = f"127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
