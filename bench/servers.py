"""Installing, configuring, starting and stopping the two servers under test.

Both run on loopback against the same PostgreSQL cluster, each in a database
created fresh for the run, with registration open and rate limits off.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import yaml

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
SYNAPSE_VENV = BENCH_DIR / ".synapse-venv"
HUGE = 1_000_000  # a rate limit nobody reaches


class ServerError(Exception):
    pass


async def recreate_database(admin_dsn: str, name: str) -> str:
    """Drops and creates `name` with C collation (Synapse refuses any other)."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(
            f"CREATE DATABASE \"{name}\" TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"
        )
    finally:
        await conn.close()
    return admin_dsn.rsplit("/", 1)[0] + "/" + name


def _run(cmd: list[str], **kwargs) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-15:]
        raise ServerError(f"{' '.join(cmd[:3])} failed:\n" + "\n".join(tail))


@dataclass
class ManagedServer:
    """A server process we started; stop() ends it and only it (its process group)."""

    name: str
    port: int
    data_dir: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)
    version: str = "unknown"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "stdout.log"

    def _spawn(self, cmd: list[str], cwd: Path) -> None:
        log = open(self.log_path, "ab")  # the child process keeps its own copy
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    async def wait_ready(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise ServerError(f"{self.name} exited; see {self.log_path}")
                try:
                    async with session.get(self.base_url + "/_matrix/client/versions") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.5)
        raise ServerError(f"{self.name} not ready after {timeout_s} s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


class Synapse(ManagedServer):
    def install(self) -> None:
        """Synapse from PyPI into bench/.synapse-venv (once; later runs reuse it)."""
        python = SYNAPSE_VENV / "bin" / "python"
        if not python.exists():
            _run([sys.executable, "-m", "venv", str(SYNAPSE_VENV)])
        probe = subprocess.run(
            [str(python), "-c", "import synapse, psycopg2; print(synapse.__version__)"],
            capture_output=True,
            text=True,
        )
        if probe.returncode != 0:
            print("installing Synapse from PyPI into bench/.synapse-venv ...", file=sys.stderr)
            _run([str(python), "-m", "pip", "install", "-q", "matrix-synapse", "psycopg2-binary"])
            probe = subprocess.run(
                [str(python), "-c", "import synapse; print(synapse.__version__)"],
                capture_output=True,
                text=True,
            )
        self.version = probe.stdout.strip().split(" ")[0]

    def configure(self, db_name: str, admin_dsn: str) -> Path:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True)
        log_config = self.data_dir / "log.yaml"
        log_config.write_text(
            yaml.safe_dump(
                {
                    "version": 1,
                    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(message)s"}},
                    "handlers": {
                        "file": {
                            "class": "logging.FileHandler",
                            "filename": str(self.data_dir / "homeserver.log"),
                            "formatter": "plain",
                        }
                    },
                    "root": {"level": "WARNING", "handlers": ["file"]},
                    "disable_existing_loggers": False,
                }
            )
        )
        pg = asyncpg_dsn_parts(admin_dsn)
        unlimited = {"per_second": HUGE, "burst_count": HUGE}
        config = {
            "server_name": "bench.synapse",
            "pid_file": str(self.data_dir / "homeserver.pid"),
            "report_stats": False,
            "listeners": [
                {
                    "port": self.port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": False,
                    "x_forwarded": False,
                    "resources": [{"names": ["client"], "compress": False}],
                }
            ],
            "database": {
                "name": "psycopg2",
                "args": {**pg, "database": db_name, "cp_min": 5, "cp_max": 10},
            },
            "log_config": str(log_config),
            "media_store_path": str(self.data_dir / "media"),
            "signing_key_path": str(self.data_dir / "signing.key"),
            "registration_shared_secret": secrets.token_urlsafe(32),
            "macaroon_secret_key": secrets.token_urlsafe(32),
            "form_secret": secrets.token_urlsafe(32),
            "enable_registration": True,
            "enable_registration_without_verification": True,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_domain_whitelist": [],
            "presence": {"enabled": True},
            "enable_metrics": False,
            "url_preview_enabled": False,
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
        path = self.data_dir / "homeserver.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def start(self, config_path: Path) -> None:
        python = str(SYNAPSE_VENV / "bin" / "python")
        cmd = [python, "-m", "synapse.app.homeserver", "-c", str(config_path)]
        _run([*cmd, "--generate-keys"], cwd=self.data_dir)
        self._spawn(cmd, self.data_dir)


@dataclass
class Ours(ManagedServer):
    # The source tree to run: this checkout by default; another one (a git worktree of
    # an older commit, say) gives before/after figures in one run.
    source_dir: Path = REPO_DIR
    label: str = ""  # says what the source tree is when it is not this checkout

    def install(self) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            self.version = version("sovereign-homeserver")
        except PackageNotFoundError:
            self.version = "working tree"
        commit = subprocess.run(
            ["git", "-C", str(self.source_dir), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        if commit:
            self.version += f" ({commit})"
        if self.label:
            self.version += f" {self.label}"

    def configure(self, db_name: str, admin_dsn: str) -> Path:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True)
        path = self.data_dir / "homeserver.yaml"
        dsn = admin_dsn.rsplit("/", 1)[0] + "/" + db_name
        _run(
            [
                sys.executable,
                "-m",
                "homeserver",
                "generate-config",
                "--server-name",
                "bench.ours",
                "--data-dir",
                str(self.data_dir),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--database-dsn",
                dsn,
                "--open-registration",
                "--no-rate-limits",
                "--output",
                str(path),
            ],
            cwd=self.source_dir,
        )
        return path

    def start(self, config_path: Path) -> None:
        cmd = [sys.executable, "-m", "homeserver", "run", "-c", str(config_path)]
        self._spawn(cmd, self.source_dir)


def asyncpg_dsn_parts(dsn: str) -> dict:
    """user/host/port of a postgresql:// DSN, as Synapse's psycopg2 section wants them."""
    from urllib.parse import urlsplit

    parts = urlsplit(dsn)
    out: dict = {"user": parts.username or "postgres", "host": parts.hostname or "127.0.0.1"}
    out["port"] = parts.port or 5432
    if parts.password:
        out["password"] = parts.password
    return out
