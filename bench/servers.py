"""Installing, configuring, starting and stopping the two servers under test.

Both run on loopback against the same PostgreSQL cluster, each in a database
created fresh for the run, with registration open and rate limits off.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from interop import synapse
from interop.synapse import REPO_DIR, ServerProcess, recreate_database, run_checked
from interop.synapse import SynapseError as ServerError

__all__ = ["REPO_DIR", "ManagedServer", "Ours", "ServerError", "Synapse", "recreate_database"]

BENCH_DIR = Path(__file__).resolve().parent


@dataclass
class ManagedServer:
    """A server process we started on `port`; stop() ends it and only it."""

    name: str
    port: int
    data_dir: Path
    version: str = "unknown"
    process: ServerProcess = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ready = f"{self.base_url}/_matrix/client/versions"
        self.process = ServerProcess(self.name, self.data_dir, ready)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def proc(self) -> subprocess.Popen | None:
        return self.process.proc

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    def _spawn(self, cmd: list[str], cwd: Path) -> None:
        self.process.spawn(cmd, cwd)

    async def wait_ready(self, timeout_s: float = 180) -> None:
        await self.process.wait_ready(timeout_s)

    def stop(self) -> None:
        self.process.stop()


class Synapse(ManagedServer):
    def install(self) -> None:
        """Synapse from PyPI into .synapse-venv (once; later runs and the tests reuse it)."""
        self.version = synapse.install()

    def configure(self, db_name: str, admin_dsn: str) -> Path:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        listener = {
            "port": self.port,
            "bind_addresses": ["127.0.0.1"],
            "type": "http",
            "tls": False,
            "x_forwarded": False,
            "resources": [{"names": ["client"], "compress": False}],
        }
        return synapse.write_config(
            self.data_dir,
            server_name="bench.synapse",
            listeners=[listener],
            database_dsn=synapse.dsn_with_database(admin_dsn, db_name),
            db_pool=(5, 10),
            enable_registration=True,
            enable_registration_without_verification=True,
            federation_domain_whitelist=[],
            presence={"enabled": True},
        )

    def start(self, config_path: Path) -> None:
        synapse.start_synapse(self.process, config_path)


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
        dsn = synapse.dsn_with_database(admin_dsn, db_name)
        run_checked(
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
