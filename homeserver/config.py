"""Configuration: one YAML file, validated at start-up into frozen dataclasses.

Every problem is reported as a ConfigError naming the key, so that the operator
gets one line that says what to fix instead of a traceback.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from homeserver.events.room_versions import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS


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
    # Period of the pruning tasks (to-device txns, device-list changes, rejected events,
    # media caches).
    prune_interval_s: int = 3600
    # /sendToDevice transaction IDs are remembered this long for idempotent retries.
    to_device_txn_retention_s: int = 7 * 86_400
    # Device-list changes older than this go; a /sync from before them reports every
    # co-member as changed (it re-fetches keys once instead of missing a change).
    device_list_retention_s: int = 30 * 86_400
    # Rejected federated events nothing refers to are forgotten after this.
    rejected_event_retention_s: int = 30 * 86_400
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
class Config:
    server_name: str
    data_dir: Path
    signing_key_path: Path
    client_listener: Listener
    metrics_listener: Listener | None = None
    public_baseurl: str | None = None
    database: DatabaseConfig = DatabaseConfig()
    registration: RegistrationConfig = RegistrationConfig()
    rate_limits: RateLimitConfig = RateLimitConfig()
    federation: FederationConfig = FederationConfig()
    voip: VoipConfig = VoipConfig()
    media: MediaConfig = MediaConfig()
    housekeeping: HousekeepingConfig = HousekeepingConfig()
    default_room_version: str = DEFAULT_ROOM_VERSION
    max_sync_timeout_ms: int = 60_000
    password_min_length: int = 8
    admins: tuple[str, ...] = ()
    log_level: str = "INFO"
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def base_url(self) -> str:
        if self.public_baseurl:
            return self.public_baseurl.rstrip("/") + "/"
        return f"http://{self.client_listener.host}:{self.client_listener.port}/"


_SERVER_NAME = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$")
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
    if not _SERVER_NAME.match(server_name):
        raise ConfigError("server_name", f"{server_name!r} is not a valid server name")

    data_dir = (base_dir / root.get("data_dir", str)).resolve()
    signing_key_path = base_dir / root.get("signing_key_path", str, str(data_dir / "signing.key"))

    listeners = root.section("listeners")
    client = parse_listen(listeners.get("client", str), "listeners.client")
    metrics_value = listeners.get("metrics", str, None)
    metrics = parse_listen(metrics_value, "listeners.metrics") if metrics_value else None

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

    log_level = root.get("log_level", str, "INFO").upper()
    if log_level not in _LOG_LEVELS:
        raise ConfigError("log_level", f"must be one of {', '.join(_LOG_LEVELS)}")

    voip = _voip(root.section("voip"))

    return Config(
        server_name=server_name,
        data_dir=data_dir,
        signing_key_path=signing_key_path.resolve(),
        client_listener=client,
        metrics_listener=metrics,
        public_baseurl=root.get("public_baseurl", str, None),
        database=database,
        registration=registration,
        rate_limits=rate_limits,
        federation=federation,
        voip=voip,
        media=_media(root.section("media"), base_dir, data_dir),
        housekeeping=_housekeeping(root.section("housekeeping")),
        default_room_version=default_version,
        max_sync_timeout_ms=root.section("sync").positive_int("max_timeout_ms", 60_000),
        password_min_length=root.section("passwords").get("min_length", int, 8),
        admins=tuple(admins),
        log_level=log_level,
        raw=root.data,
    )


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
