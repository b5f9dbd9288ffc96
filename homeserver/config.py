"""Configuration: one YAML file, validated at start-up into frozen dataclasses.

Every problem is reported as a ConfigError naming the key, so that the operator
gets one line that says what to fix instead of a traceback.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from homeserver.events.room_versions import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS

if TYPE_CHECKING:
    from homeserver.appservice.registration import AppService


class ConfigError(Exception):
    def __init__(self, key: str, reason: str):
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True)
class Listener:
    host: str
    port: int


@dataclass(frozen=True)
class DatabaseConfig:
    # None means: start the embedded PostgreSQL under data_dir.
    dsn: str | None = None
    min_size: int = 2
    max_size: int = 20


@dataclass(frozen=True)
class RateLimit:
    per_second: float
    burst: int


@dataclass(frozen=True)
class RateLimitConfig:
    enabled: bool = True
    per_user: RateLimit = RateLimit(10.0, 50)
    per_ip: RateLimit = RateLimit(20.0, 100)
    login: RateLimit = RateLimit(0.5, 5)
    register: RateLimit = RateLimit(0.2, 5)


@dataclass(frozen=True)
class RegistrationConfig:
    open: bool = False
    shared_secret: str | None = None
    guests: bool = False


@dataclass(frozen=True)
class TrustedKeyServer:
    server_name: str
    verify_keys: tuple[tuple[str, str], ...]  # (key id, unpadded base64 public key)


@dataclass(frozen=True)
class FederationConfig:
    # Exact server names and "*.example.gouv.fr" wildcards; empty means no federation.
    allowed_servers: tuple[str, ...] = ()
    listener: Listener | None = None
    tls_certificate: Path | None = None
    tls_private_key: Path | None = None
    # CA bundle for verifying remote servers; None means the system's trust store.
    ca_bundle: Path | None = None
    verify_tls: bool = True
    allow_private_addresses: bool = False
    # Served as our /.well-known/matrix/server ("host:port"); None serves nothing.
    well_known_server: str | None = None
    trusted_key_servers: tuple[TrustedKeyServer, ...] = ()
    key_validity_s: int = 86_400
    request_timeout_s: float = 30.0
    # Test/ops only: hostname -> IP literal, consulted before DNS.
    resolve_overrides: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class VoipConfig:
    # Empty: no TURN server, /voip/turnServer answers 404 M_NOT_FOUND.
    turn_uris: tuple[str, ...] = ()
    turn_shared_secret: str = ""
    turn_user_lifetime_s: int = 86_400


@dataclass(frozen=True)
class S3MediaConfig:
    bucket: str
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    prefix: str = ""


# The sizes the spec recommends (content_repo.md, "Thumbnails"): (width, height, method).
DEFAULT_THUMBNAIL_SIZES = (
    (32, 32, "crop"),
    (96, 96, "crop"),
    (320, 240, "scale"),
    (640, 480, "scale"),
    (800, 600, "scale"),
)


@dataclass(frozen=True)
class MediaConfig:
    max_upload_size: int = 50 * 1024 * 1024
    # None: <data_dir>/media_store. Also the scratch space for uploads in progress.
    store_path: Path | None = None
    backend: str = "local"
    s3: S3MediaConfig | None = None
    # Off by default: previews make the server fetch what users read from third parties.
    url_preview_enabled: bool = False
    # Networks previews may reach despite being private (e.g. an intranet wiki).
    url_preview_allowed_networks: tuple[str, ...] = ()
    # CA bundle for the previewed sites' certificates (an intranet's private CA); None:
    # the system's trust store.
    url_preview_ca_bundle: Path | None = None
    # A URL's preview is answered from the database for this long before it is fetched again.
    url_preview_cache_s: int = 3600
    # og:image files larger than this (or than max_upload_size) are left out of previews.
    url_preview_max_image_size: int = 10 * 1024 * 1024
    # Spec v1.11 froze /_matrix/media/v3/download|thumbnail; frozen servers answer 404
    # for media created (or remote media cached) while frozen.
    legacy_endpoints_frozen: bool = True
    thumbnail_sizes: tuple[tuple[int, int, str], ...] = DEFAULT_THUMBNAIL_SIZES
    max_thumbnail_pixels: int = 32_000_000
    max_pending_uploads: int = 5
    pending_upload_lifetime_s: int = 86_400


@dataclass(frozen=True)
class HousekeepingConfig:
    """Periods and retentions of the scheduled tasks (homeserver/housekeeping)."""

    enabled: bool = True
    # How often the runner looks for due tasks; each task has its own period below.
    tick_s: float = 10.0
    # Period of the pruning tasks (to-device and event txns, device-list changes, rejected
    # events, notifications, media caches).
    prune_interval_s: int = 3600
    # /sendToDevice transaction IDs are remembered this long for idempotent retries.
    to_device_txn_retention_s: int = 7 * 86_400
    # PUT /send and /state transaction IDs are remembered this long (as Synapse: 24 h).
    event_txn_retention_s: int = 86_400
    # Device-list changes older than this go; a /sync from before them reports every
    # co-member as changed (it re-fetches keys once instead of missing a change).
    device_list_retention_s: int = 30 * 86_400
    # Rejected federated events nothing refers to are forgotten after this.
    rejected_event_retention_s: int = 30 * 86_400
    # Notifications (GET /notifications, the push badge count) are kept this long.
    push_notification_retention_s: int = 30 * 86_400
    # Remote media cached longer ago than this is deleted (fetched again on demand);
    # None keeps it forever.
    remote_media_max_age_s: int | None = 90 * 86_400
    # Presence: online users inactive this long become unavailable, then offline.
    presence_interval_s: int = 30
    presence_idle_timeout_s: int = 300
    presence_offline_timeout_s: int = 1800
    # Devices' last_seen_ts/ip are collected in memory and written this often.
    last_seen_flush_s: float = 5.0
    # Erasure (deactivate with erase) rewrites this many events per transaction.
    erasure_interval_s: int = 60
    erasure_batch: int = 200


@dataclass(frozen=True)
class EphemeralMessagesConfig:
    """MSC2228 self-destructing events (homeserver/housekeeping/self_destruct.py): a
    message whose content names `org.matrix.self_destruct_after` (ms) has its content
    redacted here once that time has passed. Off by default (an unmerged MSC, as Synapse's
    `enable_ephemeral_messages`)."""

    enabled: bool = False
    # The housekeeping task's period: the backstop for the timers each process sets for
    # the next expiry it knows of.
    check_interval_s: int = 60


@dataclass(frozen=True)
class HttpConfig:
    """Limits of the HTTP listeners against slow or oversized requests."""

    # JSON request bodies (media uploads have media.max_upload_size): 413 M_TOO_LARGE above.
    max_body_bytes: int = 1024 * 1024
    # A connection must deliver a request's headers within this long after it opens or
    # after its previous response; aiohttp closes it otherwise (slowloris). It is also how
    # long an idle keep-alive connection stays open, so a reverse proxy's upstream
    # keep-alive must be shorter.
    header_read_timeout_s: float = 30.0
    # A request body must keep arriving: no bytes for this long answers 408 and closes.
    body_read_timeout_s: float = 30.0
    # On SIGTERM, requests still running after this long are cut (long-polls are answered
    # at once; this bounds the rest).
    shutdown_timeout_s: float = 1.0


@dataclass(frozen=True)
class LimitsConfig:
    """Sizes of what users store and every /sync of theirs carries."""

    # The JSON of one account-data object (global or per room): 413 M_TOO_LARGE above.
    account_data_bytes: int = 64 * 1024


# --- E-mail, account validity and the e-mail identity map ----------------------------------
# (homeserver/email, homeserver/accounts/threepids.py, homeserver/accounts/validity.py)


@dataclass(frozen=True)
class EmailConfig:
    """Sending e-mail (3PID validation, password reset, account renewal). Off by default:
    with `enabled: false` no e-mail endpoint is offered and no flow names an e-mail stage."""

    enabled: bool = False
    smtp_host: str = "localhost"
    smtp_port: int = 25
    # "none" (plain), "starttls" (upgrade after EHLO; refuse a server that cannot), or
    # "tls" (implicit TLS, usually port 465).
    smtp_tls: str = "starttls"
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_timeout_s: float = 30.0
    # The From: of validation mails, and of notices such as account renewal.
    from_address: str = ""
    notif_from: str = ""
    app_name: str = "Matrix"
    # How long a validation token stays usable, and how long a validated session may be
    # used (to register, add the address or reset a password) after it was validated.
    token_lifetime_s: int = 3600
    # Lower-case domains whose addresses may be bound here; empty allows every domain.
    allowed_domains: tuple[str, ...] = ()
    # Registration offers only flows with an m.login.email.identity stage.
    registration_requires_email: bool = False
    # requestToken calls, per address and per client IP.
    per_address: RateLimit = RateLimit(1 / 60, 3)
    per_ip: RateLimit = RateLimit(0.1, 10)


@dataclass(frozen=True)
class AccountValidityConfig:
    enabled: bool = False
    # How long an account is valid after registration or renewal (seconds).
    period_s: int = 0
    # The renewal e-mail goes this long before expiry.
    renew_at_s: int = 7 * 86_400
    # Expired accounts are deactivated this long after expiry; None never deactivates.
    deactivate_expired_after_s: int | None = None
    renew_email_subject: str = "Renew your %(app)s account"
    # How often the housekeeping task sends due renewal mails and deactivates.
    check_interval_s: int = 3600


@dataclass(frozen=True)
class IdentityConfig:
    # Lower-case e-mail domain -> the server name its addresses belong on.
    domain_map: tuple[tuple[str, str], ...] = ()
    # The server of the domains the map does not name (Tchap: the "externe" server);
    # None leaves them unmapped (this server accepts them, subject to allowed_domains).
    default_server: str | None = None
    # Identity servers (names, host[:port]; a host alone admits any of its ports) this
    # server may contact for its users: binding
    # an address there (/account/3pid/bind) publishes it outside this server, so none by
    # default. Their unbind is asked when an address is removed or the account closed.
    id_servers: tuple[str, ...] = ()
    # Skip verifying their TLS certificates: for test set-ups only (SyTest's is
    # self-signed for "localhost").
    id_servers_insecure_tls: bool = False

    def server_for_domain(self, domain: str) -> str | None:
        return dict(self.domain_map).get(domain, self.default_server)


@dataclass(frozen=True)
class SearchConfig:
    """Full-text search (POST /search)."""

    # A PostgreSQL text-search configuration (pg_ts_config, checked at start-up): 'simple'
    # does no stemming and suits every language; 'english', 'french', ... stem words.
    language: str = "simple"


@dataclass(frozen=True)
class PushConfig:
    """Delivery to push gateways (http pushers)."""

    # URL prefixes a pusher's data.url must start with (the gateways the operator trusts,
    # e.g. "https://sygnal.example.org/"); empty: any URL.
    allowed_gateways: tuple[str, ...] = ()
    # CA bundle for verifying the gateways' certificates; None: the system's trust store.
    ca_bundle: Path | None = None

    def allows(self, url: str) -> bool:
        return not self.allowed_gateways or any(url.startswith(p) for p in self.allowed_gateways)


# --- Single sign-on (CAS) and the registration captcha ---------------------------------
# (homeserver/accounts/cas.py, homeserver/accounts/recaptcha.py)


@dataclass(frozen=True)
class CasConfig:
    """CAS single sign-on (Apereo CAS, protocol 2/3). Off by default: /login then offers no
    m.login.sso and no CAS server is contacted. The CAS server named here is the only one."""

    enabled: bool = False
    # The CAS server's base URL: users are sent to SERVER_URL/login, tickets are checked at
    # SERVER_URL/proxyValidate (e.g. "https://cas.example.gouv.fr/cas").
    server_url: str = ""
    # The base URL of this server as the CAS server redirects back to it (the `service`
    # parameter is SERVICE_URL/_matrix/client/r0/login/cas/ticket?...); None: public_baseurl.
    service_url: str | None = None
    # Attributes a CAS user must have to sign in: name -> required value, or None for any
    # value.
    required_attributes: tuple[tuple[str, str | None], ...] = ()
    # The CAS attribute that gives a new account its display name; None: the CAS user name.
    displayname_attribute: str | None = None
    # The name clients show on the sign-in button (identity_providers of m.login.sso).
    idp_name: str = "CAS"
    # A CAS user whose localpart is an existing account that was not created by CAS (a
    # password account) is refused unless this is true; then the CAS user signs in as that
    # account (and is linked to it from then on).
    allow_existing_users: bool = False
    # Client redirectUrl prefixes that receive the login token by a direct redirect; any
    # other client is named on a page where the user confirms before it gets the token.
    trusted_client_urls: tuple[str, ...] = ()
    # How long the login token handed to the client stays usable (single use).
    login_token_lifetime_s: int = 60
    # CA bundle for the CAS server's certificate; None: the system's trust store.
    ca_bundle: Path | None = None


@dataclass(frozen=True)
class RecaptchaConfig:
    """The m.login.recaptcha registration stage. Off by default; when on, the captcha's
    answer is checked at `siteverify_api` (Google's reCAPTCHA or a self-hosted captcha with
    the same API), the only address contacted for it."""

    enabled: bool = False
    public_key: str = ""
    private_key: str = ""
    siteverify_api: str = ""
    # True: every registration flow starts with the captcha. False: flows with the captcha
    # are offered beside those without (the captcha can be completed, nothing requires it).
    required: bool = True
    ca_bundle: Path | None = None


@dataclass(frozen=True)
class Config:
    server_name: str
    data_dir: Path
    signing_key_path: Path
    client_listener: Listener
    metrics_listener: Listener | None = None
    # Proxies (nginx in front of the workers) whose X-Forwarded-For names the client.
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    public_baseurl: str | None = None
    database: DatabaseConfig = DatabaseConfig()
    registration: RegistrationConfig = RegistrationConfig()
    rate_limits: RateLimitConfig = RateLimitConfig()
    federation: FederationConfig = FederationConfig()
    voip: VoipConfig = VoipConfig()
    media: MediaConfig = MediaConfig()
    housekeeping: HousekeepingConfig = HousekeepingConfig()
    http: HttpConfig = HttpConfig()
    limits: LimitsConfig = LimitsConfig()
    search: SearchConfig = SearchConfig()
    push: PushConfig = PushConfig()
    email: EmailConfig = EmailConfig()
    account_validity: AccountValidityConfig = AccountValidityConfig()
    identity: IdentityConfig = IdentityConfig()
    cas: CasConfig = CasConfig()
    recaptcha: RecaptchaConfig = RecaptchaConfig()
    default_room_version: str = DEFAULT_ROOM_VERSION
    max_sync_timeout_ms: int = 60_000
    password_min_length: int = 8
    admins: tuple[str, ...] = ()
    # The local user that sends server notices (the admin API's send_server_notice).
    server_notices_localpart: str = "server"
    # Application service registrations (homeserver/appservice/registration.py).
    app_services: tuple[AppService, ...] = ()
    # CA bundle for verifying the appservices' certificates (https urls); None: the
    # system's trust store.
    app_services_ca_bundle: Path | None = None
    log_level: str = "INFO"
    # Sovereignty policies (issue 15), each in its own section; see PolicyConfig.
    access_rules: AccessRulesConfig = field(default_factory=lambda: AccessRulesConfig())
    external_users: ExternalUsersConfig = field(default_factory=lambda: ExternalUsersConfig())
    presence: PresenceConfig = field(default_factory=lambda: PresenceConfig())
    url_previews: UrlPreviewsConfig = field(default_factory=lambda: UrlPreviewsConfig())
    ephemeral_messages: EphemeralMessagesConfig = EphemeralMessagesConfig()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def base_url(self) -> str:
        if self.public_baseurl:
            return self.public_baseurl.rstrip("/") + "/"
        return f"http://{self.client_listener.host}:{self.client_listener.port}/"


_SERVER_NAME = re.compile(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def parse_listen(value: str, key: str = "listen") -> Listener:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ConfigError(key, f"expected HOST:PORT, got {value!r}")
    try:
        port_no = int(port)
    except ValueError:
        raise ConfigError(key, f"port {port!r} is not a number") from None
    if not 0 < port_no < 65536:
        raise ConfigError(key, f"port {port_no} is out of range 1-65535")
    return Listener(host.strip("[]"), port_no)


class _Section:
    """Reads typed values out of one mapping, naming the dotted key on error."""

    def __init__(self, data: Any, prefix: str):
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(prefix.rstrip(".") or "<root>", "must be a mapping")
        self.data = data
        self.prefix = prefix

    def _key(self, name: str) -> str:
        return self.prefix + name

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if name not in self.data or self.data[name] is None:
            if default is ...:
                raise ConfigError(self._key(name), "is required")
            return default
        value = self.data[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and kind is not bool:
            raise ConfigError(self._key(name), f"must be {_kind_name(kind)}, not a boolean")
        if not isinstance(value, kind):
            raise ConfigError(self._key(name), f"must be {_kind_name(kind)}")
        return value

    def section(self, name: str) -> _Section:
        return _Section(self.data.get(name), self._key(name) + ".")

    def positive_int(self, name: str, default: int) -> int:
        value = self.get(name, int, default)
        if value <= 0:
            raise ConfigError(self._key(name), "must be a positive integer")
        return value

    def positive_float(self, name: str, default: float) -> float:
        value = self.get(name, float, default)
        if value <= 0:
            raise ConfigError(self._key(name), "must be a positive number")
        return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a mapping",
    }
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, kind.__name__)


def _rate_limit(section: _Section, name: str, default: RateLimit) -> RateLimit:
    sub = section.section(name)
    per_second = sub.get("per_second", float, default.per_second)
    burst = sub.get("burst", int, default.burst)
    if per_second <= 0 or burst <= 0:
        raise ConfigError(sub.prefix.rstrip("."), "per_second and burst must be positive")
    return RateLimit(per_second, burst)


def _voip(section: _Section) -> VoipConfig:
    uris = section.get("turn_uris", list, [])
    if not all(isinstance(u, str) and u.startswith(("turn:", "turns:")) for u in uris):
        raise ConfigError("voip.turn_uris", "must be a list of turn: or turns: URIs")
    secret = section.get("turn_shared_secret", str, "")
    if uris and not secret:
        raise ConfigError("voip.turn_shared_secret", "is required when turn_uris is set")
    return VoipConfig(tuple(uris), secret, section.positive_int("turn_user_lifetime_s", 86_400))


def _federation(fed: _Section, base_dir: Path) -> FederationConfig:
    allowed = fed.get("allowed_servers", list, [])
    if not all(isinstance(s, str) and s for s in allowed):
        raise ConfigError("federation.allowed_servers", "must be a list of server names")
    listen = fed.get("listen", str, None)

    def path(name: str) -> Path | None:
        value = fed.get(name, str, None)
        return (base_dir / value).resolve() if value else None

    cert, key = path("tls_certificate"), path("tls_private_key")
    if listen and not (cert and key):
        raise ConfigError("federation.listen", "needs tls_certificate and tls_private_key")
    trusted = []
    for i, entry in enumerate(fed.get("trusted_key_servers", list, [])):
        item = _Section(entry, f"federation.trusted_key_servers[{i}].")
        keys = item.get("verify_keys", dict)
        if not keys or not all(isinstance(k, str) and isinstance(v, str) for k, v in keys.items()):
            raise ConfigError(item.prefix + "verify_keys", "must map key IDs to base64 keys")
        trusted.append(TrustedKeyServer(item.get("server_name", str), tuple(keys.items())))
    overrides = fed.get("resolve_overrides", dict, {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in overrides.items()):
        raise ConfigError("federation.resolve_overrides", "must map host names to IP addresses")
    timeout = fed.get("request_timeout_s", float, 30.0)
    if timeout <= 0:
        raise ConfigError("federation.request_timeout_s", "must be positive")
    return FederationConfig(
        allowed_servers=tuple(allowed),
        listener=parse_listen(listen, "federation.listen") if listen else None,
        tls_certificate=cert,
        tls_private_key=key,
        ca_bundle=path("ca_bundle"),
        verify_tls=fed.get("verify_tls", bool, True),
        allow_private_addresses=fed.get("allow_private_addresses", bool, False),
        well_known_server=fed.get("well_known_server", str, None),
        trusted_key_servers=tuple(trusted),
        key_validity_s=fed.positive_int("key_validity_s", 86_400),
        request_timeout_s=timeout,
        resolve_overrides=tuple(overrides.items()),
    )


def _networks(section: _Section, name: str) -> tuple[str, ...]:
    values = section.get(name, list, [])
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except (TypeError, ValueError):
            raise ConfigError(section.prefix + name, f"{value!r} is not a CIDR network") from None
    return tuple(values)


def _media(section: _Section, base_dir: Path, data_dir: Path) -> MediaConfig:
    store = section.get("store_path", str, None)
    backend = section.get("backend", str, "local")
    if backend not in ("local", "s3"):
        raise ConfigError("media.backend", "must be 'local' or 's3'")
    s3 = None
    if backend == "s3":
        sub = section.section("s3")
        s3 = S3MediaConfig(
            bucket=sub.get("bucket", str),
            endpoint_url=sub.get("endpoint_url", str, None),
            region=sub.get("region", str, None),
            access_key_id=sub.get("access_key_id", str, None),
            secret_access_key=sub.get("secret_access_key", str, None),
            prefix=sub.get("prefix", str, "").strip("/"),
        )
    sizes = []
    for i, entry in enumerate(section.get("thumbnail_sizes", list, [])):
        item = _Section(entry, f"media.thumbnail_sizes[{i}].")
        method = item.get("method", str, "scale")
        if method not in ("crop", "scale"):
            raise ConfigError(item.prefix + "method", "must be 'crop' or 'scale'")
        sizes.append((item.positive_int("width", 1), item.positive_int("height", 1), method))
    return MediaConfig(
        max_upload_size=section.positive_int("max_upload_size", MediaConfig.max_upload_size),
        store_path=(base_dir / store).resolve() if store else data_dir / "media_store",
        backend=backend,
        s3=s3,
        url_preview_enabled=section.get("url_preview_enabled", bool, False),
        url_preview_allowed_networks=_networks(section, "url_preview_allowed_networks"),
        url_preview_ca_bundle=(
            base_dir / section.get("url_preview_ca_bundle", str)
            if section.get("url_preview_ca_bundle", str, None)
            else None
        ),
        url_preview_cache_s=section.positive_int("url_preview_cache_s", 3600),
        url_preview_max_image_size=section.positive_int(
            "url_preview_max_image_size", MediaConfig.url_preview_max_image_size
        ),
        legacy_endpoints_frozen=section.get("legacy_endpoints_frozen", bool, True),
        thumbnail_sizes=tuple(sizes) or DEFAULT_THUMBNAIL_SIZES,
        max_thumbnail_pixels=section.positive_int("max_thumbnail_pixels", 32_000_000),
        max_pending_uploads=section.positive_int("max_pending_uploads", 5),
        pending_upload_lifetime_s=section.positive_int("pending_upload_lifetime_s", 86_400),
    )


def _housekeeping(section: _Section) -> HousekeepingConfig:
    d = HousekeepingConfig()
    tick = section.get("tick_s", float, d.tick_s)
    flush = section.get("last_seen_flush_s", float, d.last_seen_flush_s)
    if tick <= 0 or flush <= 0:
        raise ConfigError("housekeeping.tick_s", "tick_s and last_seen_flush_s must be positive")
    media_age = section.get("remote_media_max_age_s", int, d.remote_media_max_age_s)
    if "remote_media_max_age_s" in section.data and section.data["remote_media_max_age_s"] is None:
        media_age = None
    if media_age is not None and media_age <= 0:
        raise ConfigError("housekeeping.remote_media_max_age_s", "must be positive or null")
    idle = section.positive_int("presence_idle_timeout_s", d.presence_idle_timeout_s)
    offline = section.positive_int("presence_offline_timeout_s", d.presence_offline_timeout_s)
    if offline < idle:
        raise ConfigError(
            "housekeeping.presence_offline_timeout_s", "must not be below presence_idle_timeout_s"
        )
    return HousekeepingConfig(
        enabled=section.get("enabled", bool, True),
        tick_s=tick,
        prune_interval_s=section.positive_int("prune_interval_s", d.prune_interval_s),
        to_device_txn_retention_s=section.positive_int(
            "to_device_txn_retention_s", d.to_device_txn_retention_s
        ),
        event_txn_retention_s=section.positive_int(
            "event_txn_retention_s", d.event_txn_retention_s
        ),
        device_list_retention_s=section.positive_int(
            "device_list_retention_s", d.device_list_retention_s
        ),
        rejected_event_retention_s=section.positive_int(
            "rejected_event_retention_s", d.rejected_event_retention_s
        ),
        remote_media_max_age_s=media_age,
        presence_interval_s=section.positive_int("presence_interval_s", d.presence_interval_s),
        presence_idle_timeout_s=idle,
        presence_offline_timeout_s=offline,
        last_seen_flush_s=flush,
        erasure_interval_s=section.positive_int("erasure_interval_s", d.erasure_interval_s),
        erasure_batch=section.positive_int("erasure_batch", d.erasure_batch),
    )


def parse_config(data: Any, base_dir: Path) -> Config:
    root = _Section(data, "")
    server_name = root.get("server_name", str)
    if not _SERVER_NAME.fullmatch(server_name):
        raise ConfigError("server_name", f"{server_name!r} is not a valid server name")

    data_dir = (base_dir / root.get("data_dir", str)).resolve()
    signing_key_path = base_dir / root.get("signing_key_path", str, str(data_dir / "signing.key"))

    listeners = root.section("listeners")
    client = parse_listen(listeners.get("client", str), "listeners.client")
    metrics_value = listeners.get("metrics", str, None)
    metrics = parse_listen(metrics_value, "listeners.metrics") if metrics_value else None
    trusted_proxies = tuple(
        ipaddress.ip_network(n, strict=False) for n in _networks(listeners, "trusted_proxies")
    )

    db = root.section("database")
    dsn = db.get("dsn", str, None)
    database = DatabaseConfig(
        dsn=dsn,
        min_size=db.positive_int("min_size", 2),
        max_size=db.positive_int("max_size", 20),
    )
    if database.min_size > database.max_size:
        raise ConfigError("database.min_size", "must not exceed database.max_size")

    reg = root.section("registration")
    registration = RegistrationConfig(
        open=reg.get("open", bool, False),
        shared_secret=reg.get("shared_secret", str, None),
        guests=reg.get("guests", bool, False),
    )

    rl = root.section("rate_limits")
    defaults = RateLimitConfig()
    rate_limits = RateLimitConfig(
        enabled=rl.get("enabled", bool, True),
        per_user=_rate_limit(rl, "per_user", defaults.per_user),
        per_ip=_rate_limit(rl, "per_ip", defaults.per_ip),
        login=_rate_limit(rl, "login", defaults.login),
        register=_rate_limit(rl, "register", defaults.register),
    )

    federation = _federation(root.section("federation"), base_dir)

    rooms = root.section("rooms")
    default_version = str(rooms.get("default_version", (str, int), DEFAULT_ROOM_VERSION))
    if default_version not in KNOWN_ROOM_VERSIONS:
        raise ConfigError("rooms.default_version", f"unknown room version {default_version!r}")

    admins = root.get("admins", list, [])
    if not all(isinstance(a, str) and a.startswith("@") for a in admins):
        raise ConfigError("admins", "must be a list of user IDs")

    notices_localpart = root.section("server_notices").get("localpart", str, "server")
    if not re.fullmatch(r"[a-z0-9._=/+-]+", notices_localpart):
        raise ConfigError("server_notices.localpart", "must be a valid user localpart")

    log_level = root.get("log_level", str, "INFO").upper()
    if log_level not in _LOG_LEVELS:
        raise ConfigError("log_level", f"must be one of {', '.join(_LOG_LEVELS)}")

    voip = _voip(root.section("voip"))

    as_paths = root.get("app_services", list, [])
    if not all(isinstance(p, str) and p for p in as_paths):
        raise ConfigError("app_services", "must be a list of registration file paths")
    # Imported here: the registration parser raises this module's ConfigError.
    from homeserver.appservice.registration import load_registrations

    app_services = load_registrations([base_dir / p for p in as_paths], server_name)
    as_ca_bundle = root.get("app_services_ca_bundle", str, None)

    return Config(
        server_name=server_name,
        data_dir=data_dir,
        signing_key_path=signing_key_path.resolve(),
        client_listener=client,
        metrics_listener=metrics,
        trusted_proxies=trusted_proxies,
        public_baseurl=root.get("public_baseurl", str, None),
        database=database,
        registration=registration,
        rate_limits=rate_limits,
        federation=federation,
        voip=voip,
        media=_media(root.section("media"), base_dir, data_dir),
        housekeeping=_housekeeping(root.section("housekeeping")),
        ephemeral_messages=EphemeralMessagesConfig(
            enabled=root.section("ephemeral_messages").get("enabled", bool, False),
            check_interval_s=root.section("ephemeral_messages").positive_int(
                "check_interval_s", EphemeralMessagesConfig.check_interval_s
            ),
        ),
        http=_http(root.section("http")),
        limits=LimitsConfig(
            account_data_bytes=root.section("limits").positive_int(
                "account_data_bytes", LimitsConfig.account_data_bytes
            )
        ),
        search=_search(root.section("search")),
        push=_push(root.section("push")),
        cas=_cas(root.section("cas"), base_dir),
        recaptcha=_recaptcha(root.section("recaptcha"), base_dir),
        default_room_version=default_version,
        max_sync_timeout_ms=root.section("sync").positive_int("max_timeout_ms", 60_000),
        password_min_length=root.section("passwords").get("min_length", int, 8),
        admins=tuple(admins),
        server_notices_localpart=notices_localpart,
        app_services=app_services,
        app_services_ca_bundle=base_dir / as_ca_bundle if as_ca_bundle else None,
        log_level=log_level,
        **_sovereignty(root),
        raw=root.data,
        **_email_sections(root),
    )


def _push(section: _Section) -> PushConfig:
    gateways = section.get("allowed_gateways", list, [])
    if not all(isinstance(g, str) and g for g in gateways):
        raise ConfigError("push.allowed_gateways", "must be a list of URL prefixes")
    ca_bundle = section.get("ca_bundle", str, None)
    return PushConfig(
        allowed_gateways=tuple(gateways), ca_bundle=Path(ca_bundle) if ca_bundle else None
    )


def _http_url(section: _Section, name: str, required: bool) -> str | None:
    value = section.get(name, str, None)
    if value is None:
        if required:
            raise ConfigError(section.prefix + name, "is required when enabled")
        return None
    if not re.fullmatch(r"https?://[^/?#\s]+(/[^?#\s]*)?", value):
        raise ConfigError(section.prefix + name, "must be an http(s) URL without query")
    return value


def _cas(section: _Section, base_dir: Path) -> CasConfig:
    enabled = section.get("enabled", bool, False)
    server_url = _http_url(section, "server_url", enabled) or ""
    service_url = _http_url(section, "service_url", False)
    required: list[tuple[str, str | None]] = []
    for name, value in section.get("required_attributes", dict, {}).items():
        if not isinstance(name, str) or not (value is None or isinstance(value, str)):
            raise ConfigError(
                "cas.required_attributes", "must map attribute names to a string or null"
            )
        required.append((name, value))
    trusted = section.get("trusted_client_urls", list, [])
    if not all(isinstance(u, str) and re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*://.", u) for u in trusted):
        raise ConfigError("cas.trusted_client_urls", "must be a list of URL prefixes")
    ca_bundle = section.get("ca_bundle", str, None)
    return CasConfig(
        enabled=enabled,
        server_url=server_url.rstrip("/"),
        service_url=service_url.rstrip("/") if service_url else None,
        required_attributes=tuple(required),
        displayname_attribute=section.get("displayname_attribute", str, None),
        idp_name=section.get("idp_name", str, CasConfig.idp_name),
        allow_existing_users=section.get("allow_existing_users", bool, False),
        trusted_client_urls=tuple(trusted),
        login_token_lifetime_s=section.positive_int(
            "login_token_lifetime_s", CasConfig.login_token_lifetime_s
        ),
        ca_bundle=(base_dir / ca_bundle).resolve() if ca_bundle else None,
    )


def _recaptcha(section: _Section, base_dir: Path) -> RecaptchaConfig:
    enabled = section.get("enabled", bool, False)
    keys = {
        name: section.get(name, str, ... if enabled else "")
        for name in ("public_key", "private_key")
    }
    ca_bundle = section.get("ca_bundle", str, None)
    return RecaptchaConfig(
        enabled=enabled,
        siteverify_api=_http_url(section, "siteverify_api", enabled) or "",
        required=section.get("required", bool, True),
        ca_bundle=(base_dir / ca_bundle).resolve() if ca_bundle else None,
        **keys,
    )


def _search(section: _Section) -> SearchConfig:
    language = section.get("language", str, SearchConfig.language)
    # A name as pg_ts_config spells one; whether it exists is checked against the database.
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", language):
        raise ConfigError("search.language", f"{language!r} is not a text-search configuration")
    return SearchConfig(language=language)


def _http(section: _Section) -> HttpConfig:
    defaults = HttpConfig()
    return HttpConfig(
        max_body_bytes=section.positive_int("max_body_bytes", defaults.max_body_bytes),
        **{
            name: section.positive_float(name, getattr(defaults, name))
            for name in ("header_read_timeout_s", "body_read_timeout_s", "shutdown_timeout_s")
        },
    )


# --- E-mail, account validity and the e-mail identity map (see EmailConfig) ----------------

_DURATION = re.compile(r"([0-9]+)\s*([smhdwy]?)")
_DURATION_UNITS = {
    "": 1,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86_400,
    "w": 7 * 86_400,
    "y": 365 * 86_400,
}
_EMAIL_DOMAIN = re.compile(
    r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+"
)
_MAILBOX = re.compile(r"[^@\s<>]+@[^@\s<>]+")


def _duration(section: _Section, name: str, default: int | None) -> int | None:
    """Seconds, given as an integer or with a unit: "30d", "12h", "2w", "1y"."""
    value = section.get(name, (int, str), default)
    if value is None:
        return None
    match = _DURATION.fullmatch(str(value).strip())
    seconds = int(match.group(1)) * _DURATION_UNITS[match.group(2)] if match else 0
    if seconds <= 0:
        raise ConfigError(section.prefix + name, "must be a positive duration (e.g. 3600, 30d)")
    return seconds


def _domains(section: _Section, name: str) -> tuple[str, ...]:
    values = section.get(name, list, [])
    if not all(isinstance(v, str) and _EMAIL_DOMAIN.fullmatch(v.lower()) for v in values):
        raise ConfigError(section.prefix + name, "must be a list of domain names")
    return tuple(v.lower() for v in values)


def _email(section: _Section) -> EmailConfig:
    d = EmailConfig()
    enabled = section.get("enabled", bool, False)
    from_address = section.get("from", str, "")
    if enabled and not _MAILBOX.fullmatch(parseaddr(from_address)[1]):
        raise ConfigError("email.from", "is required (an e-mail address) when email is enabled")
    tls = section.get("smtp_tls", str, d.smtp_tls)
    if tls not in ("none", "starttls", "tls"):
        raise ConfigError("email.smtp_tls", "must be 'none', 'starttls' or 'tls'")
    port = section.get("smtp_port", int, 465 if tls == "tls" else d.smtp_port)
    if not 0 < port < 65536:
        raise ConfigError("email.smtp_port", f"port {port} is out of range 1-65535")
    user = section.get("smtp_user", str, None)
    password = section.get("smtp_password", str, None)
    if (user is None) != (password is None):
        raise ConfigError("email.smtp_user", "smtp_user and smtp_password go together")
    limits = section.section("rate_limits")
    return EmailConfig(
        enabled=enabled,
        smtp_host=section.get("smtp_host", str, d.smtp_host),
        smtp_port=port,
        smtp_tls=tls,
        smtp_user=user,
        smtp_password=password,
        smtp_timeout_s=section.positive_float("smtp_timeout_s", d.smtp_timeout_s),
        from_address=from_address,
        notif_from=section.get("notif_from", str, from_address),
        app_name=section.get("app_name", str, d.app_name),
        token_lifetime_s=_duration(section, "token_lifetime", d.token_lifetime_s) or 0,
        allowed_domains=_domains(section, "allowed_domains"),
        registration_requires_email=section.get("registration_requires_email", bool, False),
        per_address=_rate_limit(limits, "per_address", d.per_address),
        per_ip=_rate_limit(limits, "per_ip", d.per_ip),
    )


def _account_validity(section: _Section, email: EmailConfig) -> AccountValidityConfig:
    d = AccountValidityConfig()
    enabled = section.get("enabled", bool, False)
    period = _duration(section, "period", None)
    if enabled and period is None:
        raise ConfigError("account_validity.period", "is required when account_validity is on")
    renew_at = _duration(section, "renew_at", d.renew_at_s) or d.renew_at_s
    if period is not None and renew_at >= period:
        raise ConfigError("account_validity.renew_at", "must be shorter than period")
    if enabled and not email.enabled:
        raise ConfigError("account_validity.enabled", "needs email.enabled (renewal mails)")
    subject = section.get("renew_email_subject", str, d.renew_email_subject)
    try:
        subject % {"app": "x"}
    except (KeyError, ValueError, TypeError):
        raise ConfigError("account_validity.renew_email_subject", "may use only %(app)s") from None
    return AccountValidityConfig(
        enabled=enabled,
        period_s=period or 0,
        renew_at_s=renew_at,
        deactivate_expired_after_s=_duration(section, "deactivate_expired_after", None),
        renew_email_subject=subject,
        check_interval_s=_duration(section, "check_interval", d.check_interval_s) or 3600,
    )


def _identity(section: _Section) -> IdentityConfig:
    mapping = section.get("domain_map", dict, {})
    for domain, server in mapping.items():
        if not (isinstance(domain, str) and _EMAIL_DOMAIN.fullmatch(domain.lower())):
            raise ConfigError("identity.domain_map", f"{domain!r} is not a domain name")
        if not (isinstance(server, str) and _SERVER_NAME.fullmatch(server)):
            raise ConfigError(f"identity.domain_map.{domain}", "must be a server name")
    default = section.get("default_server", str, None)
    if default is not None and not _SERVER_NAME.fullmatch(default):
        raise ConfigError("identity.default_server", "must be a server name")
    id_servers = section.get("id_servers", list, [])
    if not all(isinstance(n, str) and _SERVER_NAME.fullmatch(n) for n in id_servers):
        raise ConfigError("identity.id_servers", "must be a list of server names (host[:port])")
    return IdentityConfig(
        domain_map=tuple((k.lower(), v) for k, v in mapping.items()),
        default_server=default,
        id_servers=tuple(id_servers),
        id_servers_insecure_tls=section.get("id_servers_insecure_tls", bool, False),
    )


def _email_sections(root: _Section) -> dict[str, Any]:
    email = _email(root.section("email"))
    return {
        "email": email,
        "account_validity": _account_validity(root.section("account_validity"), email),
        "identity": _identity(root.section("identity")),
    }


def load_config(path: str | os.PathLike[str]) -> Config:
    config_path = Path(path)
    try:
        text = config_path.read_text()
    except OSError as e:
        raise ConfigError("config", f"cannot read {config_path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError("config", f"{config_path} is not valid YAML{where}") from None
    return parse_config(data, config_path.parent.resolve())


# ---- sovereignty policies (issue 15) -------------------------------------------------------


@dataclass(frozen=True)
class AccessRulesConfig:
    """Room access rules (im.vector.room.access_rules, homeserver/policy/)."""

    enabled: bool = False
    # Servers whose users are external: names as in federation.allowed_servers ("host",
    # "host:port" or "*.domain"). Their users may not enter `restricted` rooms.
    external_servers: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExternalUsersConfig:
    """Local accounts the admin API marks external (homeserver/policy/service.py, homeserver/http/auth.py)."""

    # Given to an account marked external without an explicit expiry; None: no expiry.
    default_validity_s: int | None = None


PRESENCE_MODES = ("off", "local", "federated")


@dataclass(frozen=True)
class PresenceConfig:
    # off: no presence at all; local: shared between our users only; federated: also
    # sent to and accepted from other servers.
    mode: str = "local"


@dataclass(frozen=True)
class UrlPreviewsConfig:
    # The domains (and their subdomains) URL previews may fetch; None: any public domain.
    # Previews themselves are switched on by media.url_preview_enabled.
    allowed_domains: tuple[str, ...] | None = None


_DOMAIN = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"
)


def _sovereignty(root: _Section) -> dict[str, Any]:
    ar = root.section("access_rules")
    servers = ar.get("external_servers", list, [])
    for server in servers:
        if not isinstance(server, str) or not _SERVER_NAME.fullmatch(server.removeprefix("*.")):
            raise ConfigError("access_rules.external_servers", f"{server!r} is not a server name")
    ext = root.section("external_users")
    validity = ext.get("default_validity_s", int, None)
    if validity is not None and validity <= 0:
        raise ConfigError("external_users.default_validity_s", "must be positive or null")
    mode = root.section("presence").get("mode", str, "local")
    if mode not in PRESENCE_MODES:
        raise ConfigError("presence.mode", f"must be one of {', '.join(PRESENCE_MODES)}")
    domains = root.section("url_previews").get("allowed_domains", list, None)
    if domains is not None and not all(
        isinstance(d, str) and _DOMAIN.fullmatch(d) for d in domains
    ):
        raise ConfigError("url_previews.allowed_domains", "must be a list of domain names")
    return {
        "access_rules": AccessRulesConfig(
            enabled=ar.get("enabled", bool, False), external_servers=tuple(servers)
        ),
        "external_users": ExternalUsersConfig(default_validity_s=validity),
        "presence": PresenceConfig(mode=mode),
        "url_previews": UrlPreviewsConfig(
            allowed_domains=tuple(d.lower() for d in domains) if domains is not None else None
        ),
    }
