"""A private PostgreSQL under the data directory, for machines with no database configured.

The `pgserver` wheel ships the PostgreSQL binaries; the server listens on a unix socket
inside the data directory only, so it is reachable by nothing but this process's user.

pgserver counts the processes using a data directory in `.handle_pids.json` and stops the
server when the last one lets go. A process killed with SIGKILL never lets go, so its PID
would stay there for good and no later run would ever stop the server: PIDs of processes
that are gone are dropped before each start. And a start right after a crash may find the
previous server still on its way down (or its orphaned backends still holding its shared
memory): the start waits for it to be gone, and then for the new one to accept
connections, instead of handing out a DSN that refuses them.
"""

from __future__ import annotations

import atexit
import json
import logging
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

logger = logging.getLogger(__name__)

# How long a start waits for a previous server to go and the new one to answer.
START_TIMEOUT_S = 60.0
_POLL_S = 0.2


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, *, start_timeout_s: float = START_TIMEOUT_S):
        self.pgdata = data_dir / "postgres"
        self.start_timeout_s = start_timeout_s
        self._server: Any = None  # pgserver's server handle, once started

    def start(self) -> str:
        """Starts (or reuses) the server and returns a DSN for it. Blocking: call in a thread."""
        import pgserver
        from pgserver.postgres_server import PostgresServer

        self.pgdata.mkdir(parents=True, exist_ok=True)
        pgdata = self.pgdata.resolve()
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            self._wait_for_previous_server(deadline)
            self._forget_dead_handles()
            try:
                self._server = pgserver.get_server(pgdata, cleanup_mode="stop")
            except (subprocess.SubprocessError, AssertionError, OSError, psutil.Error) as e:
                # pgserver keeps a half-built handle per directory; the next try needs none.
                failed = PostgresServer._instances.pop(pgdata, None)
                if failed is not None:
                    atexit.unregister(failed._cleanup)
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL under {self.pgdata} did not start: {e}") from e
                logger.info("embedded PostgreSQL not started yet (%s); retrying", type(e).__name__)
                time.sleep(_POLL_S)
                continue
            uri = self._server.get_uri("postgres")
            if self._wait_accepting(uri, deadline):
                logger.info("embedded PostgreSQL running under %s", self.pgdata)
                return uri
            # It went down while we looked (a shutdown under way): start it again.
            self.stop()
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL under {self.pgdata} does not accept connections")

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None

    def _postmaster(self) -> tuple[psutil.Process, str] | None:
        """The running postmaster of this data directory and its status line, if any."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            process = psutil.Process(int(lines[0]))
            if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
                return None
        except (OSError, ValueError, IndexError, psutil.Error):
            return None
        return process, (lines[7].strip() if len(lines) > 7 else "")

    def _wait_for_previous_server(self, deadline: float) -> None:
        """Waits while a postmaster of this directory is starting or stopping, and while
        the backends of a killed one still run (they hold its shared memory)."""
        while time.monotonic() < deadline:
            running = self._postmaster()
            if running is not None and running[1] == "ready":
                return  # reused as it is
            if running is None and not self._orphaned_backends():
                self._remove_stale_pid_file()
                return
            time.sleep(_POLL_S)

    def _remove_stale_pid_file(self) -> None:
        """A postmaster.pid naming a process that is gone, or a zombie nobody reaped:
        PostgreSQL and pgserver would both take it for a running server."""
        path = self.pgdata / "postmaster.pid"
        try:
            pid = int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return  # none, or being written
        try:
            gone = psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            gone = True
        except psutil.Error:
            gone = False
        if gone:
            logger.info("embedded PostgreSQL: removing the stale postmaster.pid of %d", pid)
            path.unlink(missing_ok=True)

    def _orphaned_backends(self) -> list[psutil.Process]:
        """`postgres` processes of this directory (they run in it) with no postmaster: the
        caller found none."""
        found = []
        for proc in psutil.process_iter(["name"]):
            if proc.info["name"] != "postgres":
                continue
            try:
                cwd = proc.cwd()
            except psutil.Error:
                continue
            if Path(cwd) == self.pgdata.resolve():
                found.append(proc)
        return found

    def _forget_dead_handles(self) -> None:
        handles = self.pgdata / ".handle_pids.json"
        try:
            pids = json.loads(handles.read_text())
        except (OSError, ValueError):
            return
        alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
        if alive != pids:
            logger.info("embedded PostgreSQL: forgetting %d exited users", len(pids) - len(alive))
            handles.write_text(json.dumps(alive))

    def _wait_accepting(self, uri: str, deadline: float) -> bool:
        """True once the server accepts connections; False if it is shutting down."""
        from pgserver._commands import POSTGRES_BIN_PATH

        while True:
            # pg_isready: 0 accepting, 1 rejecting (starting or stopping), 2 no answer.
            code = subprocess.run(
                [str(POSTGRES_BIN_PATH / "pg_isready"), "-q", "-d", uri], check=False
            ).returncode
            if code == 0:
                return True
            running = self._postmaster()
            if running is None or running[1] == "stopping" or time.monotonic() > deadline:
                return False
            time.sleep(_POLL_S)
