"""Worker processes of this server on one PostgreSQL database, optionally behind nginx.

The layout is deploy/README.md's: one config file for every worker, each started with
`homeserver run --listen/--metrics-listen` overriding its ports, nginx (the shipped
deploy/nginx site, rendered by bench/nginx.py) hashing clients over them by access token.
Every process started here is stopped by its own process group, never by name.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import psutil
import yaml

from bench.memory import tree_rss
from bench.nginx import nginx_conf, render_site
from bench.servers import REPO_DIR, ServerError
from interop.synapse import ServerProcess, run_checked
from tests.federation_ca import TestCA

SERVER_NAME = "bench.scale"


@dataclass
class ClusterConfig:
    data_dir: Path
    dsn: str
    # PostgreSQL allows 100 connections on the bench machine and other agents use some:
    # every worker gets this pool, whatever the count, so counts compare like for like.
    pool_max: int = 10
    max_sync_timeout_ms: int = 60_000
    app_services: list[str] = field(default_factory=list)  # registration file paths

    @property
    def path(self) -> Path:
        return self.data_dir / "homeserver.yaml"

    def write(self) -> Path:
        """generate-config, then the few keys a bench changes (rewritten on every call)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            run_checked(
                [
                    sys.executable, "-m", "homeserver", "generate-config",
                    "--server-name", SERVER_NAME, "--data-dir", str(self.data_dir),
                    "--listen", "127.0.0.1:28699", "--database-dsn", self.dsn,
                    "--open-registration", "--no-rate-limits", "--output", str(self.path),
                ],
                cwd=REPO_DIR,
            )  # fmt: skip
        config = yaml.safe_load(self.path.read_text())
        config["listeners"]["trusted_proxies"] = ["127.0.0.1/32"]
        config.setdefault("database", {})["max_size"] = self.pool_max
        config["database"]["min_size"] = 2
        config.setdefault("sync", {})["max_timeout_ms"] = self.max_sync_timeout_ms
        if self.app_services:
            config["app_services"] = self.app_services
        else:
            config.pop("app_services", None)
        self.path.write_text(yaml.safe_dump(config))
        return self.path


class Worker:
    """One `homeserver run` process with its client and metrics ports."""

    def __init__(self, index: int, config: ClusterConfig, client_port: int, metrics_port: int):
        self.client_port = client_port
        self.metrics_port = metrics_port
        self.config = config
        log_dir = config.data_dir / f"worker{index}"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.process = ServerProcess(
            f"worker{index}", log_dir, f"{self.base_url}/_matrix/client/versions"
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def pid(self) -> int | None:
        return self.process.proc.pid if self.process.proc else None

    def start(self) -> None:
        self.process.spawn(
            [
                sys.executable, "-m", "homeserver", "run", "-c", str(self.config.path),
                "--listen", f"127.0.0.1:{self.client_port}",
                "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
            ],
            REPO_DIR,
        )  # fmt: skip

    async def wait_ready(self) -> None:
        await self.process.wait_ready(180)

    def stop(self) -> None:
        self.process.stop()

    def rss(self) -> int | None:
        return tree_rss(self.pid) if self.pid else None

    async def metric(self, session: aiohttp.ClientSession, name: str, contains: str = "") -> float:
        """The sum of one series' samples on this worker's metrics listener."""
        async with session.get(f"http://127.0.0.1:{self.metrics_port}/metrics") as resp:
            text = await resp.text()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name) : len(name) + 1] in ("{", " "):
                if contains in line:
                    total += float(line.rsplit(" ", 1)[1])
        return total


class Nginx:
    """Debian's nginx with the shipped site, over the given workers, TLS on `port`."""

    def __init__(self, run_dir: Path, port: int, client_ports: list[int], connections: int):
        self.run_dir = run_dir
        self.port = port
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        ca = TestCA(run_dir / "ca")
        cert, key = ca.issue("127.0.0.1")
        self.ca_path = ca.ca_path
        site = run_dir / "site.conf"
        site.write_text(render_site(client_ports, port, cert, key))
        self.conf = nginx_conf(run_dir, site, worker_connections=connections)
        self.binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.process = ServerProcess("nginx", run_dir, f"https://127.0.0.1:{port}/")

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        run_checked([self.binary, "-t", "-p", str(self.run_dir), "-c", str(self.conf)])
        self.process.spawn([self.binary, "-p", str(self.run_dir), "-c", str(self.conf)], REPO_DIR)

    async def wait_ready(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            proc = self.process.proc
            if proc is not None and proc.poll() is not None:
                break  # exited: it could not bind, say
            try:
                async with session.get(self.base_url + "/_matrix/client/versions") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise ServerError(f"nginx not ready; see {self.run_dir}/error.log")

    def rss(self) -> int | None:
        return tree_rss(self.process.proc.pid) if self.process.proc else None

    def stop(self) -> None:
        self.process.stop()


class Cluster:
    """`count` workers on one database; `front` puts nginx before them."""

    def __init__(self, config: ClusterConfig, count: int, first_port: int, front_port: int | None):
        self.config = config
        self.workers = [
            Worker(i, config, first_port + 2 * i, first_port + 2 * i + 1) for i in range(count)
        ]
        self.nginx = (
            Nginx(
                config.data_dir / "nginx",
                front_port,
                [w.client_port for w in self.workers],
                connections=4096,
            )
            if front_port
            else None
        )

    @property
    def base_url(self) -> str:
        return self.nginx.base_url if self.nginx else self.workers[0].base_url

    async def start(self, session: aiohttp.ClientSession) -> None:
        self.config.write()
        # One at a time: migrations run at start-up under an advisory lock anyway.
        for worker in self.workers:
            worker.start()
            await worker.wait_ready()
        if self.nginx:
            # Our fixed ports lie in Linux's ephemeral range: an outgoing connection
            # anywhere on the machine may hold nginx's port for a moment.
            for attempt in range(3):
                self.nginx.start()
                try:
                    await self.nginx.wait_ready(session)
                    break
                except ServerError:
                    self.nginx.stop()
                    if attempt == 2:
                        raise
                    await asyncio.sleep(2)

    def stop(self) -> None:
        if self.nginx:
            self.nginx.stop()
        for worker in self.workers:
            worker.stop()


async def table_sizes(dsn: str) -> dict[str, tuple[int, int]]:
    """Every table of the public schema: (exact row count, bytes with indexes and TOAST)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT c.oid, c.relname, pg_total_relation_size(c.oid) AS bytes FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
        )
        result = {}
        for row in rows:
            count = await conn.fetchval(f'SELECT count(*) FROM public."{row["relname"]}"')
            result[row["relname"]] = (count, row["bytes"])
        return result
    finally:
        await conn.close()


def size_delta(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], per: int
) -> dict:
    """Rows and bytes added per unit (user, message), in total and by table (largest first)."""
    tables = {}
    for name, (rows, nbytes) in after.items():
        rows0, bytes0 = before.get(name, (0, 0))
        if rows != rows0 or nbytes != bytes0:
            tables[name] = {"rows": (rows - rows0) / per, "bytes": (nbytes - bytes0) / per}
    ordered = dict(sorted(tables.items(), key=lambda kv: -kv[1]["bytes"]))
    return {
        "rows_per_unit": sum(t["rows"] for t in tables.values()),
        "bytes_per_unit": sum(t["bytes"] for t in tables.values()),
        "by_table": ordered,
    }


class CpuMeter:
    """CPU seconds spent in a window by each part of the setup, read from /proc (psutil):
    the workers, nginx, this load generator, the PostgreSQL backends serving `db_name`,
    and the whole machine (whose remainder is other work: the machine is shared)."""

    def __init__(self, cluster: Cluster, db_name: str, admin_dsn: str):
        self.cluster = cluster
        self.db_name = db_name
        self.admin_dsn = admin_dsn
        self._start: dict[str, float] = {}
        self._began = 0.0

    async def _backends(self) -> list[int]:
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1", self.db_name
            )
        finally:
            await conn.close()
        return [r["pid"] for r in rows]

    @staticmethod
    def _cpu(pids: list[int | None], children: bool = False) -> float:
        total = 0.0
        for pid in pids:
            if pid is None:
                continue
            try:
                proc = psutil.Process(pid)
                procs = [proc, *proc.children(recursive=True)] if children else [proc]
                for p in procs:
                    t = p.cpu_times()
                    total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total

    async def _read(self) -> dict[str, float]:
        machine = psutil.cpu_times()
        nginx = self.cluster.nginx
        return {
            "workers": self._cpu([w.pid for w in self.cluster.workers], children=True),
            **{
                f"worker{i}": self._cpu([w.pid], children=True)
                for i, w in enumerate(self.cluster.workers)
            },
            "nginx": self._cpu(
                [nginx.process.proc.pid if nginx and nginx.process.proc else None], True
            ),
            "loadgen": self._cpu([os.getpid()]),
            **{f"pg{pid}": self._cpu([pid]) for pid in await self._backends()},
            "machine_busy": machine.user
            + machine.system
            + machine.nice
            + machine.irq
            + machine.softirq,
        }

    async def start(self) -> None:
        self._start = await self._read()
        self._began = time.perf_counter()

    async def stop(self) -> dict:
        """Cores used on average over the window, by part (a backend that came and went
        inside the window is missed: the pools keep theirs open; PostgreSQL's own WAL
        writer and checkpointer count as other work)."""
        end = await self._read()
        wall = time.perf_counter() - self._began
        per_worker = [
            round((end[f"worker{i}"] - self._start.get(f"worker{i}", 0.0)) / wall, 3)
            for i in range(len(self.cluster.workers))
        ]
        used = {
            k: (end[k] - self._start.get(k, 0.0)) / wall
            for k in end
            if k[:2] != "pg" and not (k.startswith("worker") and k[6:].isdigit())
        }
        # Per backend pid: one that opened inside the window counts from zero.
        used["postgres_backends"] = (
            sum(end[k] - self._start.get(k, 0.0) for k in end if k[:2] == "pg") / wall
        )
        ours = sum(v for k, v in used.items() if k != "machine_busy")
        used["other_work_on_machine"] = max(0.0, used["machine_busy"] - ours)
        # Each worker's own share (the first one writes the events behind nginx).
        return {
            **{f"cores_{k}": round(v, 3) for k, v in used.items()},
            "cores_per_worker": per_worker,
        }
