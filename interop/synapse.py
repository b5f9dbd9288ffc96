"""Synapse, the reference homeserver, as a peer we run on loopback.

One piece of code serves the benchmark (bench/servers.py runs Synapse side by side with
this server) and the interop tests (tests/synapse_peer.py federates with it): installing
Synapse from PyPI into its own virtualenv, making its database, writing the config both
share, and starting and stopping the process. Blocking functions are meant for a thread.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aiohttp
import asyncpg
import yaml

REPO_DIR = Path(__file__).resolve().parent.parent
# Next to .venv, gitignored; a machine that ran before keeps it, a fresh clone makes it.
SYNAPSE_VENV = REPO_DIR / ".synapse-venv"
PACKAGES = ("matrix-synapse", "psycopg2-binary")
INSTALL_TIMEOUT_S = 900
HUGE = 1_000_000  # a rate limit nobody reaches

# What pip prints when the package index cannot be reached at all (as opposed to a
# package that fails to build or a version conflict, which are real failures).
_NETWORK_ERRORS = (
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "ConnectTimeoutError",
    "ProxyError",
    "Connection refused",
)


class SynapseError(Exception):
    pass


class SynapseUnavailable(SynapseError):
    """Synapse is not installed and PyPI cannot be reached to install it."""


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def installed_version(venv: Path = SYNAPSE_VENV) -> str | None:
    """Synapse's version in `venv`, or None when it (or psycopg2) is not importable there."""
    python = _python(venv)
    if not python.exists():
        return None
    probe = subprocess.run(
        [str(python), "-c", "import synapse, psycopg2; print(synapse.__version__)"],
        capture_output=True,
        text=True,
        cwd=venv,  # Synapse appends git details of the working directory to its version
    )
    if probe.returncode != 0:
        return None
    return probe.stdout.strip().split(" ")[0]


def install(venv: Path = SYNAPSE_VENV) -> str:
    """Installs Synapse from PyPI into `venv` unless it is there already; returns its version.

    Raises SynapseUnavailable when the index cannot be reached, SynapseError otherwise."""
    version = installed_version(venv)
    if version:
        return version
    if not _python(venv).exists():
        run_checked([sys.executable, "-m", "venv", str(venv)])
    print(f"installing Synapse from PyPI into {venv} ...", file=sys.stderr)
    try:
        result = subprocess.run(
            [str(_python(venv)), "-m", "pip", "install", "-q", *PACKAGES],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise SynapseError(
            f"pip install {' '.join(PACKAGES)} took over {INSTALL_TIMEOUT_S} s"
        ) from None
    output = result.stdout + result.stderr
    if result.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-10:])
        if any(marker in output for marker in _NETWORK_ERRORS):
            raise SynapseUnavailable(f"cannot reach the package index to install Synapse:\n{tail}")
        raise SynapseError(f"pip install {' '.join(PACKAGES)} failed:\n{tail}")
    version = installed_version(venv)
    if not version:
        raise SynapseError(f"Synapse installed into {venv} but does not import")
    return version


def run_checked(cmd: list[str], **kwargs) -> None:
    """Runs `cmd`; a failure raises SynapseError with the end of its output."""
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-15:]
        raise SynapseError(f"{' '.join(cmd[:3])} failed:\n" + "\n".join(tail))


# --- the database -------------------------------------------------------------------


def dsn_with_database(dsn: str, name: str) -> str:
    """The same DSN naming database `name` (keeps a ?host=/socket/dir query intact)."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


async def recreate_database(admin_dsn: str, name: str) -> str:
    """Drops and creates `name` with C collation (Synapse refuses any other); its DSN."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(
            f"CREATE DATABASE \"{name}\" TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"
        )
    finally:
        await conn.close()
    return dsn_with_database(admin_dsn, name)


async def drop_database(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def psycopg2_args(dsn: str) -> dict:
    """user/password/host/port of a postgresql:// DSN, as Synapse's psycopg2 section wants
    them. A `?host=` query (the embedded PostgreSQL's unix socket directory) wins."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    out: dict = {
        "user": (query.get("user") or [parts.username or "postgres"])[0],
        "host": (query.get("host") or [parts.hostname or "127.0.0.1"])[0],
        "port": int((query.get("port") or [parts.port or 5432])[0]),
    }
    password = (query.get("password") or [parts.password])[0]
    if password:
        out["password"] = password
    return out


# --- the config ----------------------------------------------------------------------


def unlimited_rate_limits() -> dict:
    unlimited = {"per_second": HUGE, "burst_count": HUGE}
    return {
        "rc_message": unlimited,
        "rc_registration": unlimited,
        "rc_registration_token_validity": unlimited,
        "rc_login": {"address": unlimited, "account": unlimited, "failed_attempts": unlimited},
        "rc_admin_redaction": unlimited,
        "rc_joins": {"local": unlimited, "remote": unlimited},
        "rc_joins_per_room": unlimited,
        "rc_3pid_validation": unlimited,
        "rc_invites": {"per_room": unlimited, "per_user": unlimited, "per_issuer": unlimited},
        "rc_third_party_invite": unlimited,
        "rc_room_creation": unlimited,
        "rc_presence": {"per_user": unlimited},
        "rc_delayed_event_mgmt": unlimited,
        "rc_reports": unlimited,
        "rc_media_create": unlimited,
        "rc_key_requests": unlimited,
        "rc_federation": {
            "window_size": 1000,
            "sleep_limit": HUGE,
            "sleep_delay": 0,
            "reject_limit": HUGE,
            "concurrent": HUGE,
        },
    }


def write_config(
    data_dir: Path,
    *,
    server_name: str,
    listeners: list[dict],
    database_dsn: str,
    log_level: str = "WARNING",
    db_pool: tuple[int, int] = (2, 10),
    **settings,
) -> Path:
    """Writes homeserver.yaml (and its logging config) under `data_dir`; returns its path.

    Common to every use: no key notary (`trusted_key_servers: []`), no URL previews, no
    metrics or stats reporting, no rate limits. `settings` add to or override these."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_config = data_dir / "log.yaml"
    log_config.write_text(
        yaml.safe_dump(
            {
                "version": 1,
                "formatters": {
                    "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
                },
                "handlers": {
                    "file": {
                        "class": "logging.FileHandler",
                        "filename": str(data_dir / "homeserver.log"),
                        "formatter": "plain",
                    }
                },
                "root": {"level": log_level, "handlers": ["file"]},
                "disable_existing_loggers": False,
            }
        )
    )
    config = {
        "server_name": server_name,
        "pid_file": str(data_dir / "homeserver.pid"),
        "report_stats": False,
        "listeners": listeners,
        "database": {
            "name": "psycopg2",
            "args": {
                **psycopg2_args(database_dsn),
                "database": urlsplit(database_dsn).path.lstrip("/"),
                "cp_min": db_pool[0],
                "cp_max": db_pool[1],
            },
        },
        "log_config": str(log_config),
        "media_store_path": str(data_dir / "media"),
        "signing_key_path": str(data_dir / "signing.key"),
        "registration_shared_secret": secrets.token_urlsafe(32),
        "macaroon_secret_key": secrets.token_urlsafe(32),
        "form_secret": secrets.token_urlsafe(32),
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "enable_metrics": False,
        "url_preview_enabled": False,
        **unlimited_rate_limits(),
        **settings,
    }
    path = data_dir / "homeserver.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def read_config(config_path: Path) -> dict:
    return yaml.safe_load(config_path.read_text())


# --- the process ---------------------------------------------------------------------


class ServerProcess:
    """A server process we started; stop() ends it and only it (its process group)."""

    def __init__(self, name: str, data_dir: Path, ready_url: str):
        self.name = name
        self.data_dir = data_dir
        self.ready_url = ready_url
        self.proc: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "stdout.log"

    def spawn(self, cmd: list[str], cwd: Path, *, die_with_parent: bool = False) -> None:
        """Starts `cmd` in its own process group. `die_with_parent` (Linux) has the kernel
        end it if we die without stopping it (a killed test run); call it from the main
        thread then, as the signal follows the thread that started the process."""
        log = open(self.log_path, "ab")  # the child process keeps its own copy
        self.proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )
        log.close()

    async def wait_ready(self, timeout_s: float = 180) -> None:
        """Polls `ready_url` until it answers 200; bounded by `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        # Each probe is bounded too: whatever else may hold the port must not stall us.
        probe = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=probe) as session:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise SynapseError(f"{self.name} exited; see {self.log_path}")
                try:
                    async with session.get(self.ready_url) as r:
                        if r.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.5)
        raise SynapseError(f"{self.name} not ready after {timeout_s} s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def synapse_command(config_path: Path, venv: Path = SYNAPSE_VENV) -> list[str]:
    return [str(_python(venv)), "-m", "synapse.app.homeserver", "-c", str(config_path)]


def generate_keys(config_path: Path, venv: Path = SYNAPSE_VENV) -> None:
    """Writes Synapse's signing key (first time) next to its config. Blocking (~1 s)."""
    run_checked([*synapse_command(config_path, venv), "--generate-keys"], cwd=config_path.parent)


def start_synapse(
    server: ServerProcess,
    config_path: Path,
    venv: Path = SYNAPSE_VENV,
    *,
    die_with_parent: bool = False,
) -> None:
    """Generates Synapse's signing key (first time) and starts it in `server.data_dir`."""
    generate_keys(config_path, venv)
    server.spawn(
        synapse_command(config_path, venv), server.data_dir, die_with_parent=die_with_parent
    )


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent goes (prctl PR_SET_PDEATHSIG)."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1: PDEATHSIG
    except OSError:
        pass  # not Linux: the test run stops it itself, as usual
