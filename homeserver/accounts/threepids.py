"""E-mail identity: validating an address by mail (requestToken, then the link or the
token), binding it to an account, and the m.login.email.identity UIA stage.

Flow (spec client-server-api "Adding Account Administrative Contact Information"): the
client calls a /requestToken with its own `client_secret`; we mail a one-time link that
carries a token; opening it (or POSTing the token to `submit_url`) validates the session;
the client then spends the session, with its `sid` and `client_secret`, on registering,
adding the address to its account, or resetting its password. A session is bound to one
of those purposes, so a link mailed for one cannot be used for another.

Secrets are stored as SHA-256 (client secrets and tokens); tokens expire after
`email.token_lifetime` and are cleared when used; a validated session is deleted when
spent. Which addresses may be used here: `email.allowed_domains`, and the identity map
(`identity.domain_map` / `default_server`), which says which server an address belongs
on. An address that belongs on another server is refused with 403 M_THREEPID_DENIED,
what Tchap answers (its Synapse's check_3pid_allowed asks the same map).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from homeserver.accounts.usernames import user_id_from_login
from homeserver.email.mailer import Mailer, MailError, mail_failed
from homeserver.http.errors import MatrixError, invalid_param, missing_param
from homeserver.http.ratelimit import RateLimiter
from homeserver.http.request import field
from storage.accounts import now_ms
from storage.threepids import ThreepidStore

if TYPE_CHECKING:
    from homeserver.app import Homeserver

EMAIL = "email"
EMAIL_IDENTITY = "m.login.email.identity"
THIRDPARTY_ID = "m.id.thirdparty"

# Purposes of a validation session, and the path of the link their mail carries (the
# paths Synapse serves, so links stay familiar to operators and support staff).
REGISTER, ADD, PASSWORD = "register", "add", "password"
SUBMIT_PATHS = {
    REGISTER: "registration",
    ADD: "add_threepid",
    PASSWORD: "password_reset",
}
SUBMIT_PREFIX = "/_matrix/client/unstable/{kind}/email/submit_token"

# RFC 5321: 64 octets of local part, 254 of address (a path is 256 with its brackets).
MAX_ADDRESS = 254
MAX_LOCAL = 64
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_DOMAIN = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+")
# The spec's grammar of client_secret and sid.
_SECRET = re.compile(r"[0-9a-zA-Z.=_-]{1,255}")


def _sha256(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def canonical_email(address: str) -> str:
    """The address as stored and compared: trimmed and lower-cased (as Synapse does);
    M_INVALID_PARAM unless it is a plain addr-spec within RFC 5321's lengths."""
    address = address.strip().lower()
    if len(address) > MAX_ADDRESS:
        raise invalid_param(f"E-mail address longer than {MAX_ADDRESS} characters")
    local, at, domain = address.rpartition("@")
    if (
        not at
        or not 0 < len(local) <= MAX_LOCAL
        or not _LOCAL.fullmatch(local)
        or local.startswith(".")
        or local.endswith(".")
        or ".." in local
        or not _DOMAIN.fullmatch(domain)
    ):
        raise invalid_param("Invalid e-mail address")
    return address


def secret_param(body: dict, name: str) -> str:
    value = field(body, name, str)
    if not _SECRET.fullmatch(value):
        raise invalid_param(f"'{name}' must be 1-255 characters of [0-9a-zA-Z.=_-]")
    return value


def threepid_denied(error: str) -> MatrixError:
    return MatrixError(403, "M_THREEPID_DENIED", error)


def auth_failed(error: str = "No validated e-mail session found") -> MatrixError:
    return MatrixError(400, "M_THREEPID_AUTH_FAILED", error)


def bad_token() -> MatrixError:
    # Synapse's ThreepidValidationError: 400 M_FORBIDDEN.
    return MatrixError(400, "M_FORBIDDEN", "Validation token not found or has expired")


class ThreepidService:
    def __init__(self, hs: Homeserver, store: ThreepidStore, mailer: Mailer):
        self.hs = hs
        self.store = store
        self.mailer = mailer
        self.config = hs.config.email
        enabled = hs.config.rate_limits.enabled
        self.address_limiter = RateLimiter("email_address", self.config.per_address, enabled)
        self.ip_limiter = RateLimiter("email_ip", self.config.per_ip, enabled)

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def require_enabled(self) -> None:
        if not self.config.enabled:
            raise MatrixError(
                400, "M_THREEPID_MEDIUM_NOT_SUPPORTED", "E-mail is not configured on this server"
            )

    # --- which addresses belong here -----------------------------------------------------------

    def home_of(self, address: str) -> str | None:
        """The server the identity map puts this address on (None: not mapped)."""
        return self.hs.config.identity.server_for_domain(address.rpartition("@")[2])

    def check_allowed(self, address: str) -> None:
        domain = address.rpartition("@")[2]
        allowed = self.config.allowed_domains
        if allowed and domain not in allowed:
            raise threepid_denied("E-mail addresses of this domain are not accepted here")
        home = self.home_of(address)
        if home is not None and home != self.hs.server_name:
            raise threepid_denied(f"This address belongs on the server {home}, not this one")

    # --- requestToken ------------------------------------------------------------------------

    async def request_token(self, purpose: str, body: dict, ip: str) -> dict:
        """Validates the request, then mails a token unless `send_attempt` is not above
        the last one seen for this secret and address (then the same sid, no mail)."""
        self.require_enabled()
        client_secret = secret_param(body, "client_secret")
        raw_address = field(body, "email", str)
        send_attempt = field(body, "send_attempt", int)
        next_link = field(body, "next_link", str, None)
        if next_link is not None and not next_link.startswith(("https://", "http://")):
            raise invalid_param("'next_link' must be an http(s) URL")
        for name in ("id_server", "id_access_token"):
            field(body, name, str, None)
        if not 0 <= send_attempt <= 2**53:
            raise invalid_param("'send_attempt' must be a non-negative integer")
        self.ip_limiter.check(ip)
        address = canonical_email(raw_address)
        self.address_limiter.check(address)
        if purpose != PASSWORD:
            self.check_allowed(address)
        owner = await self.store.owner(EMAIL, address)
        if purpose == PASSWORD and owner is None:
            raise MatrixError(400, "M_THREEPID_NOT_FOUND", "No account has this e-mail address")
        if purpose != PASSWORD and owner is not None:
            raise MatrixError(400, "M_THREEPID_IN_USE", "This e-mail address is already in use")

        secret_hash = _sha256(client_secret)
        existing = await self.store.session_for(secret_hash, EMAIL, address, purpose)
        if existing is not None and send_attempt <= existing["send_attempt"]:
            return self._token_response(existing["session_id"], purpose)
        token = secrets.token_urlsafe(32)
        sid = await self.store.upsert_session(
            secrets.token_urlsafe(24),
            EMAIL,
            address,
            secret_hash,
            purpose,
            send_attempt,
            _sha256(token),
            now_ms() + self.config.token_lifetime_s * 1000,
            next_link,
        )
        link = self.link(purpose, {"token": token, "client_secret": client_secret, "sid": sid})
        try:
            await self.mailer.send(address, *self._mail(purpose, link, token))
        except MailError:
            # The same send_attempt may try again.
            await self.store.reset_attempt(sid, existing["send_attempt"] if existing else -1)
            raise mail_failed() from None
        return self._token_response(sid, purpose)

    def link(self, purpose: str, query: dict[str, str]) -> str:
        path = SUBMIT_PREFIX.format(kind=SUBMIT_PATHS[purpose])
        return self.hs.config.base_url.rstrip("/") + path + "?" + urlencode(query)

    def _token_response(self, sid: str, purpose: str) -> dict:
        path = SUBMIT_PREFIX.format(kind=SUBMIT_PATHS[purpose])
        return {"sid": sid, "submit_url": self.hs.config.base_url.rstrip("/") + path}

    def _mail(self, purpose: str, link: str, token: str) -> tuple[str, str]:
        app = self.config.app_name
        what = {
            REGISTER: "register an account",
            ADD: "add this address to your account",
            PASSWORD: "reset your password",
        }[purpose]
        minutes = max(1, self.config.token_lifetime_s // 60)
        text = (
            f"Someone asked to {what} on {app} ({self.hs.server_name}) with this e-mail"
            f" address.\n\nIf it was you, open this link to confirm:\n\n{link}\n\n"
            f"or enter this code in your client: {token}\n\n"
            f"The link works once, for {minutes} minutes. If it was not you, ignore this mail."
        )
        return f"[{app}] Confirm your e-mail address", text

    # --- the link / submit_url -----------------------------------------------------------------

    async def submit_token(self, sid: str, client_secret: str, token: str, kind: str) -> str | None:
        """Validates the session if sid, secret and token all match an unexpired, unused
        token (otherwise 400 M_FORBIDDEN and nothing changes); its next_link."""
        session = await self.store.session(sid)
        if (
            session is None
            or SUBMIT_PATHS[session["purpose"]] != kind
            or session["token_hash"] is None
            or not hmac.compare_digest(session["client_secret_hash"], _sha256(client_secret))
            or not hmac.compare_digest(session["token_hash"], _sha256(token))
        ):
            raise bad_token()
        if not await self.store.validate(sid, _sha256(token), now_ms()):
            raise bad_token()  # expired, or spent by a concurrent request
        return session["next_link"]

    # --- spending a validated session ----------------------------------------------------------

    async def validated_session(self, sid: str, client_secret: str, purpose: str):
        """The validated, unspent session (for `purpose`) that sid and secret name, or 400
        M_THREEPID_AUTH_FAILED."""
        session = await self.store.session(sid)
        if (
            session is None
            or session["purpose"] != purpose
            or session["validated_ts"] is None
            or session["validated_ts"] < now_ms() - self.config.token_lifetime_s * 1000
            or not hmac.compare_digest(session["client_secret_hash"], _sha256(client_secret))
        ):
            raise auth_failed()
        return session

    async def spend(self, conn, sid: str) -> None:
        """Deletes the session in the caller's transaction; a second spender fails."""
        if not await self.store.delete_session(conn, sid):
            raise auth_failed("This e-mail session was already used")

    async def bind(self, conn, user_id: str, address: str, validated_ts: int) -> None:
        if not await self.store.bind(conn, user_id, EMAIL, address, validated_ts):
            raise MatrixError(400, "M_THREEPID_IN_USE", "This e-mail address is already in use")

    async def check_stage(self, auth: dict, purpose: str) -> dict:
        """The m.login.email.identity UIA stage: what it establishes (the address), for
        the endpoint to spend once the flow completes. Raises MatrixError when unmet."""
        self.require_enabled()
        creds = auth.get("threepid_creds", auth.get("threepidCreds"))
        if not isinstance(creds, dict):
            raise missing_param("Missing 'threepid_creds'")
        sid = secret_param(creds, "sid")
        session = await self.validated_session(sid, secret_param(creds, "client_secret"), purpose)
        if purpose == REGISTER:
            self.check_allowed(session["address"])
        return {
            "threepid": {
                "medium": EMAIL,
                "address": session["address"],
                "validated_ts": session["validated_ts"],
                "sid": sid,
            }
        }

    async def user_of(self, address: str) -> str | None:
        return await self.store.owner(EMAIL, address)

    async def login_user(self, body: dict, server_name: str) -> str | None:
        """The user an m.login.password body names: by user ID (user_id_from_login) or,
        with e-mail configured, by a bound address (`identifier: {type:
        m.id.thirdparty, medium: email, address}`, how Tchap's clients log in). None when
        no account has the address: the caller answers as for a wrong password."""
        identifier = body.get("identifier")
        if not (
            self.enabled
            and isinstance(identifier, dict)
            and identifier.get("type") == THIRDPARTY_ID
        ):
            # Without e-mail, m.id.thirdparty is an unsupported identifier type there.
            return user_id_from_login(body, server_name)
        if identifier.get("medium") != EMAIL:
            raise invalid_param("Only 'email' third-party identifiers log in here")
        address = identifier.get("address")
        if not isinstance(address, str):
            raise missing_param("Missing 'address'")
        return await self.user_of(canonical_email(address))

    async def prune(self, now: int) -> int:
        """Sessions never spent: gone a day after their token's lifetime."""
        return await self.store.prune_sessions(
            now - self.config.token_lifetime_s * 1000 - 86_400_000
        )
