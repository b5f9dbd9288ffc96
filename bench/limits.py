"""The physical limits the figures are measured against, once per bench.run.

- commits/s: `pgbench -N` (TPC-B without the branch and teller updates: per transaction
  one UPDATE, one SELECT, one INSERT and one commit) against the same PostgreSQL the
  servers use, in a database of its own (bench_pgbench, created and dropped here), with
  a fixed number of clients for a fixed time. Its tps is commits/s: the ceiling of any
  figure that needs one commit per operation (messages, registrations, rooms, joins).
- requests/s: a bare aiohttp server (bench/bare.py: uvloop, one handler answering a
  fixed small JSON body) in a process of its own on 127.0.0.1:28700, loaded by the
  whoami scenario's load (the same client code, concurrency and duration). Its
  requests/s is the ceiling of our whoami figure.

Both are bounded in time; a failure is recorded as the limit's status, never raised.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from bench.client import request
from bench.scenarios.base import Sizes
from bench.scenarios.requests import WHOAMI_PATH, CpuMeter, request_rate
from bench.servers import REPO_DIR
from bench.stats import rate, summarize
from interop.synapse import (
    ServerProcess,
    SynapseError,
    drop_database,
    psycopg2_args,
    recreate_database,
)

PGBENCH_DB = "bench_pgbench"
PGBENCH_SCALE = 10  # 1,000,000 accounts rows (~150 MB): small, cached, no row contention
BARE_PORT = 28700


def pgbench_exe() -> str | None:
    return (
        os.environ.get("PGBENCH")
        or shutil.which("pgbench")
        or ("/usr/bin/pgbench" if Path("/usr/bin/pgbench").exists() else None)
    )


def _pg_args(admin_dsn: str) -> list[str]:
    conn = psycopg2_args(admin_dsn)
    return ["-h", str(conn["host"]), "-p", str(conn["port"]), "-U", str(conn["user"])]


def _env(admin_dsn: str) -> dict[str, str]:
    env = dict(os.environ)
    password = psycopg2_args(admin_dsn).get("password")
    if password:
        env["PGPASSWORD"] = password
    return env


def _figure(pattern: str, text: str) -> float | None:
    match = re.search(pattern, text)
    return float(match.group(1)) if match else None


async def pgbench(admin_dsn: str, clients: int, seconds: float) -> dict:
    """`pgbench -N` on a fresh database of its own; commits/s and its latency."""
    exe = pgbench_exe()
    threads = max(1, min(clients, os.cpu_count() or 1))
    command = [
        "-N", "-M", "prepared", "-c", str(clients), "-j", str(threads),
        "-T", str(max(1, round(seconds))), PGBENCH_DB,
    ]  # fmt: skip
    result: dict = {
        "command": "pgbench " + " ".join(command),
        "scale": PGBENCH_SCALE,
        "clients": clients,
        "threads": threads,
        "seconds": max(1, round(seconds)),
        "commits_per_s": None,
    }
    if exe is None:
        result["status"] = "pgbench not found (PATH or $PGBENCH)"
        return result
    began = time.perf_counter()
    pg = _pg_args(admin_dsn)
    env = _env(admin_dsn)
    try:
        await recreate_database(admin_dsn, PGBENCH_DB)
        init = [exe, "-i", "-q", "-s", str(PGBENCH_SCALE), *pg, PGBENCH_DB]
        await asyncio.to_thread(
            subprocess.run, init, capture_output=True, text=True, check=True, env=env, timeout=300
        )
        result["load_average"] = os.getloadavg()
        run = await asyncio.to_thread(
            subprocess.run,
            [exe, *pg, *command],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            timeout=seconds + 120,
        )
        result["load_average_after"] = os.getloadavg()
        out = run.stdout
        result["commits_per_s"] = _figure(r"tps = ([\d.]+)", out)
        result["latency_avg_ms"] = _figure(r"latency average = ([\d.]+) ms", out)
        result["transactions"] = _figure(r"number of transactions actually processed: (\d+)", out)
        result["status"] = "ok" if result["commits_per_s"] is not None else "no tps in output"
        if result["status"] != "ok":
            result["output"] = out[-2000:]
    except subprocess.CalledProcessError as e:
        result["status"] = f"failed: {(e.stderr or e.stdout or '').strip()[-500:]}"
    except subprocess.TimeoutExpired as e:
        result["status"] = f"stopped after {e.timeout} s"
    except Exception as e:  # the limits must not lose the run's results
        result["status"] = f"failed: {type(e).__name__}: {e}"
    finally:
        try:
            await drop_database(admin_dsn, PGBENCH_DB)
        except Exception as e:
            result.setdefault("notes", []).append(f"could not drop {PGBENCH_DB}: {e}")
    result["wall_seconds"] = round(time.perf_counter() - began, 1)
    return result


async def bare_aiohttp(
    session: aiohttp.ClientSession, concurrency: int, seconds: float, port: int = BARE_PORT
) -> dict:
    """bench/bare.py in its own process, under the whoami scenario's load."""
    base_url = f"http://127.0.0.1:{port}"
    data_dir = Path(f"/tmp/bench-bare-{port}")
    data_dir.mkdir(parents=True, exist_ok=True)
    server = ServerProcess("bare aiohttp", data_dir, f"{base_url}/_matrix/client/versions")
    result: dict = {
        "server": "bench/bare.py: aiohttp "
        + aiohttp.__version__
        + ", uvloop, one handler, fixed JSON body",
        "url": base_url,
        "concurrency": concurrency,
        "seconds": seconds,
        "requests_per_s": None,
    }
    began = time.perf_counter()
    try:
        server.spawn([sys.executable, "-m", "bench.bare", "--port", str(port)], REPO_DIR)
        await server.wait_ready(30)
        await request(session, base_url, "GET", WHOAMI_PATH, token="bare")  # warm
        result["load_average"] = os.getloadavg()
        durations: list[float] = []
        pid = server.proc.pid if server.proc else None
        with CpuMeter(pid) as cpu:
            elapsed = await request_rate(session, base_url, "bare", concurrency, seconds, durations)
        result["loadgen_cores"], result["server_cores"] = cpu.loadgen_cores, cpu.server_cores
        result["load_average_after"] = os.getloadavg()
        s = summarize(durations)
        result.update(
            requests=len(durations),
            requests_per_s=rate(len(durations), elapsed),
            p50_ms=None if s["p50"] is None else s["p50"] * 1000,
            p99_ms=None if s["p99"] is None else s["p99"] * 1000,
            status="ok",
        )
    except (SynapseError, OSError, aiohttp.ClientError) as e:
        result["status"] = f"failed: {type(e).__name__}: {e}; see {server.log_path}"
    except Exception as e:  # the limits must not lose the run's results
        result["status"] = f"failed: {type(e).__name__}: {e}"
    finally:
        server.stop()  # only the process started above (its own process group)
    result["wall_seconds"] = round(time.perf_counter() - began, 1)
    return result


async def measure(admin_dsn: str, sizes: Sizes, session: aiohttp.ClientSession) -> dict:
    """Both limits, one after the other (bench.run: after the servers under test stopped)."""
    return {
        "pgbench": await pgbench(admin_dsn, sizes.pgbench_clients, sizes.pgbench_seconds),
        "bare_aiohttp": await bare_aiohttp(session, sizes.whoami_concurrency, sizes.whoami_seconds),
    }


def main(argv: list[str] | None = None) -> int:
    """Both limits alone: `flock /tmp/bench.lock .venv/bin/python -m bench.limits [--quick]`."""
    import orjson

    from bench.client import new_session
    from bench.scenarios.base import DEFAULT, QUICK

    parser = argparse.ArgumentParser(prog="python -m bench.limits", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the --quick sizes of bench.run")
    parser.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()  # as bench.run's load generator
    except ImportError:
        pass

    async def run() -> dict:
        async with new_session() as session:
            return await measure(args.admin_dsn, QUICK if args.quick else DEFAULT, session)

    print(orjson.dumps(asyncio.run(run()), option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
