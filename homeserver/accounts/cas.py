"""CAS single sign-on (spec client-server-api "SSO client login/authentication"; CAS
protocol 2/3 as Apereo CAS serves it).

Off unless `cas.enabled`. The flow, for a login:

1. the client sends the browser to /login/sso/redirect?redirectUrl=R (or the legacy
   /login/cas/redirect); we redirect it to CAS_SERVER/login?service=S, where S is our
   /login/cas/ticket URL carrying R;
2. the CAS server signs the user in and sends the browser to S&ticket=T;
3. we check T at CAS_SERVER/proxyValidate (with the same S) and read the CAS user and
   attributes from its XML; the CAS user is mapped to a local user (created at its first
   sign-in) and a short-lived single-use login token is issued;
4. the browser goes to R?loginToken=..., directly for the client URLs the operator
   trusts, otherwise after a page naming the client where the user confirms;
5. the client spends the token with POST /login {"type": "m.login.token"}.

For user-interactive auth (an account that signs in by CAS confirms a sensitive request),
the fallback page /auth/m.login.sso/fallback/web?session=X names the request and sends the
browser to CAS with S carrying the session; the ticket then completes the session's
m.login.sso stage when the CAS user is the session's user.

The CAS server in the configuration is the only one contacted; the identity a CAS user
signs in as is remembered (user_external_ids), so later renamings of accounts or a
password account created with the same name never take it over.
"""

from __future__ import annotations

import logging
import re
import secrets
import ssl
import time
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import aiohttp

from homeserver.accounts.usernames import validate_localpart
from homeserver.http.auth import hash_token
from homeserver.http.errors import MatrixError
from storage.sso import SsoStore

if TYPE_CHECKING:
    from homeserver.app import Homeserver

logger = logging.getLogger(__name__)

PROVIDER = "cas"
# The path CAS sends browsers back to. r0, as Synapse has it: CAS servers register the
# service URLs they accept, and existing registrations name this one.
TICKET_PATH = "/_matrix/client/r0/login/cas/ticket"
_NS = "{http://www.yale.edu/tp/cas}"
_TIMEOUT = aiohttp.ClientTimeout(total=15)
_MAX_RESPONSE = 1 << 20
_ALLOWED = re.compile(r"[a-z0-9._\-/+]")


class CasError(Exception):
    """A sign-in that cannot go on: shown to the user's browser as a page."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def localpart_for(cas_user: str) -> str:
    """The localpart a CAS user name maps to (spec appendices, "Mapping from other
    character sets"): lower-cased; each byte of a character a localpart cannot hold, '='
    included, as =xx; a leading '_' (reserved) as =5f."""
    out = []
    for ch in cas_user.lower():
        if _ALLOWED.fullmatch(ch):
            out.append(ch)
        else:
            out.extend(f"={b:02x}" for b in ch.encode("utf-8"))
    text = "".join(out)
    return "=5f" + text[1:] if text.startswith("_") else text


def with_login_token(redirect_url: str, token: str) -> str:
    """`redirect_url` with loginToken=token, any loginToken it had removed."""
    parts = urlsplit(redirect_url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "loginToken"]
    query.append(("loginToken", token))
    return urlunsplit(parts._replace(query=urlencode(query)))


def parse_validation(body: bytes) -> tuple[str, dict[str, list[str]]]:
    """The CAS user and attributes of a /proxyValidate answer; CasError if the ticket was
    refused or the answer is not a CAS service response."""
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise CasError(502, "The CAS server's answer could not be read")
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        raise CasError(502, "The CAS server's answer could not be read") from None
    success = root.find(f"{_NS}authenticationSuccess")
    if success is None:
        failure = root.find(f"{_NS}authenticationFailure")
        code = failure.get("code") if failure is not None else None
        logger.info("CAS ticket refused (%r)", code)
        raise CasError(401, "The CAS server did not accept this sign-in; please try again")
    user_el = success.find(f"{_NS}user")
    user = (user_el.text or "").strip() if user_el is not None else ""
    if not user:
        raise CasError(502, "The CAS server named no user")
    attributes: dict[str, list[str]] = {}
    attrs_el = success.find(f"{_NS}attributes")
    for child in attrs_el if attrs_el is not None else ():
        name = child.tag.rpartition("}")[2]
        attributes.setdefault(name, []).append((child.text or "").strip())
    return user, attributes


class CasService:
    def __init__(self, hs: Homeserver, store: SsoStore):
        self.hs = hs
        self.store = store
        self.config = hs.config.cas

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def service_url(self, args: dict[str, str]) -> str:
        """The `service` parameter: our ticket URL carrying `args` (redirectUrl or session)."""
        base = self.config.service_url or self.hs.config.base_url.rstrip("/")
        return f"{base}{TICKET_PATH}?{urlencode(args, quote_via=quote)}"

    def login_url(self, args: dict[str, str]) -> str:
        """Where the browser signs in at the CAS server."""
        return f"{self.config.server_url}/login?{urlencode({'service': self.service_url(args)})}"

    def _ssl(self) -> ssl.SSLContext | bool:
        if self.config.ca_bundle is None:
            return True
        return ssl.create_default_context(cafile=str(self.config.ca_bundle))

    async def validate_ticket(
        self, ticket: str, args: dict[str, str]
    ) -> tuple[str, dict[str, list[str]]]:
        """Asks the CAS server whether `ticket` was issued for our service URL of `args`."""
        url = f"{self.config.server_url}/proxyValidate"
        params = {"ticket": ticket, "service": self.service_url(args)}
        try:
            async with aiohttp.ClientSession(
                timeout=_TIMEOUT, connector=aiohttp.TCPConnector(ssl=self._ssl())
            ) as session:
                async with session.get(url, params=params, allow_redirects=False) as resp:
                    body = await resp.content.read(_MAX_RESPONSE)
                    status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError, ssl.SSLError) as e:
            logger.warning("CAS server unreachable: %s", type(e).__name__)
            raise CasError(502, "The CAS server could not be reached") from None
        if status != 200:
            logger.warning("CAS ticket validation answered HTTP %d", status)
            raise CasError(502, "The CAS server could not check this sign-in")
        return parse_validation(body)

    def check_attributes(self, attributes: dict[str, list[str]]) -> None:
        for name, value in self.config.required_attributes:
            values = attributes.get(name)
            if not values or (value is not None and value not in values):
                raise CasError(403, "Your CAS account is not authorised to sign in here")

    async def user_for_login(self, cas_user: str, attributes: dict[str, list[str]]) -> str:
        """The local user the CAS user signs in as: the one linked to them, or the user of
        their mapped localpart (created now when there is none; an existing account only
        with `allow_existing_users`), then linked."""
        hs = self.hs
        self.check_attributes(attributes)
        for _attempt in range(2):
            linked = await self.store.user_for(PROVIDER, cas_user)
            if linked is not None:
                await self._check_usable(linked)
                return linked
            try:
                user_id = validate_localpart(localpart_for(cas_user), hs.server_name)
            except MatrixError:
                raise CasError(403, "Your CAS user name cannot be a user ID here") from None
            if hs.appservices.exclusive_owner(user_id):
                raise CasError(403, "Your CAS user name is reserved here")
            accounts = hs.accounts
            if await accounts.users.user_exists(user_id):
                if not self.config.allow_existing_users:
                    logger.info("CAS sign-in refused: an account of that name exists")
                    raise CasError(
                        403,
                        "An account of this name already exists on this server and does not "
                        "sign in by CAS; ask your administrator",
                    )
                await self._check_usable(user_id)
                async with hs.db.acquire() as conn, conn.transaction():
                    linked_now = await self.store.link(conn, PROVIDER, cas_user, user_id)
                if linked_now:
                    return user_id
                continue  # linked meanwhile by a concurrent sign-in: read it again
            name_attr = self.config.displayname_attribute
            names = attributes.get(name_attr, []) if name_attr else []
            displayname = next((n for n in names if n), cas_user)[:256]
            try:
                async with hs.db.acquire() as conn, conn.transaction():
                    created = await accounts.users.create_user(
                        conn, user_id, None, False, displayname
                    )
                    if not (created and await self.store.link(conn, PROVIDER, cas_user, user_id)):
                        # Created or linked meanwhile: nothing of this transaction is kept.
                        raise _Retry()
                    await accounts.validity.on_register(conn, user_id)
            except _Retry:
                continue
            logger.info("CAS sign-in created an account")
            return user_id
        raise CasError(409, "This sign-in collided with another; please try again")

    async def _check_usable(self, user_id: str) -> None:
        user = await self.hs.accounts.users.get_user(user_id)
        if user is None or user["deactivated"]:
            raise CasError(403, "This account has been deactivated")
        if user["locked"]:
            raise CasError(403, "This account has been locked")

    async def identity_is(self, cas_user: str, user_id: str) -> bool:
        """Whether the CAS user signs in as `user_id` (for user-interactive auth)."""
        return await self.store.user_for(PROVIDER, cas_user) == user_id

    async def signs_in_by_cas(self, user_id: str) -> bool:
        return self.enabled and PROVIDER in await self.store.providers_for_user(user_id)

    async def issue_login_token(self, user_id: str) -> str:
        token = secrets.token_urlsafe(32)
        expires = int(time.time() * 1000) + self.config.login_token_lifetime_s * 1000
        await self.store.add_login_token(hash_token(token), user_id, PROVIDER, expires)
        return token

    async def spend_login_token(self, token: str) -> str | None:
        return await self.store.spend_login_token(hash_token(token))

    def trusts_client(self, redirect_url: str) -> bool:
        return any(redirect_url.startswith(p) for p in self.config.trusted_client_urls)


class _Retry(Exception):
    pass
