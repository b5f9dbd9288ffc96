"""A private PostgreSQL under the data directory, for machines with no database configured.

The `pgserver` wheel ships the PostgreSQL binaries; the server listens on a unix socket
inside the data directory only, so it is reachable by nothing but this process's user.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class EmbeddedPostgres:
    def __init__(self, data_dir: Path):
        self.pgdata = data_dir / "postgres"
        self._server: Any = None  # pgserver's server handle, once started

    def start(self) -> str:
        """Starts (or reuses) the server and returns a DSN for it. Blocking: call in a thread."""
        import pgserver

        self.pgdata.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(self.pgdata, cleanup_mode="stop")
        logger.info("embedded PostgreSQL running under %s", self.pgdata)
        return self._server.get_uri("postgres")

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
