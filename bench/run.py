"""One command: Synapse and this server side by side, scenario by scenario.

    .venv/bin/python -m bench.run [--quick] [--only a,b] [--servers synapse,ours]
                                  [--profile DIR] [--no-limits]

Installs Synapse from PyPI into .synapse-venv (first run only), creates
the databases bench_synapse and bench_ours fresh on the local PostgreSQL,
starts both servers on loopback (Synapse :18108, ours :18008), runs every
scenario on one then the other (alternating who goes first), records each
server's resident memory (and with --profile, py-spy profiles of ours during each
scenario's measured phases), stops both, measures the physical limits once
(bench/limits.py: pgbench -N commits/s, a bare aiohttp handler's requests/s), and
writes bench/results/<date>.json and bench/RESULTS.md. Never fails on a figure: it
only reports.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import asyncpg
import psutil

from bench import limits, report
from bench.client import new_session
from bench.loadgen import parse_only
from bench.memory import mib
from bench.profile import py_spy
from bench.scenarios import run_scenario
from bench.scenarios.base import DEFAULT, QUICK, Context, Target
from bench.servers import (
    BENCH_DIR,
    REPO_DIR,
    ManagedServer,
    Ours,
    ServerError,
    Synapse,
    recreate_database,
)

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


async def _machine(admin_dsn: str) -> str:
    conn = await asyncpg.connect(admin_dsn)
    try:
        pg = (await conn.fetchval("SHOW server_version")).split(" ")[0]
    finally:
        await conn.close()
    mem = psutil.virtual_memory().total / 2**30
    return (
        f"{_cpu_model()}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, "
        f"PostgreSQL {pg} (shared by both servers)"
    )


async def _start(server: ManagedServer, db_name: str, admin_dsn: str) -> str | None:
    """Installs, configures and starts one server; returns why not, or None when up."""
    try:
        await asyncio.to_thread(server.install)
        await recreate_database(admin_dsn, db_name)
        config_path = await asyncio.to_thread(server.configure, db_name, admin_dsn)
        await asyncio.to_thread(server.start, config_path)
        await server.wait_ready()
        return None
    except (ServerError, OSError, asyncpg.PostgresError) as e:
        return str(e)


def _command(args: argparse.Namespace) -> str:
    parts = ["python -m bench.run"]
    if args.quick:
        parts.append("--quick")
    if args.only:
        parts.append(f"--only {args.only}")
    if args.servers != "synapse,ours":
        parts.append(f"--servers {args.servers}")
    if args.profile:
        parts.append(f"--profile {args.profile}")
    if args.no_limits:
        parts.append("--no-limits")
    return " ".join(parts)


async def _run(args: argparse.Namespace) -> dict:
    began = time.perf_counter()
    scenarios = parse_only(args.only)
    wanted = [s.strip() for s in args.servers.split(",")]
    servers: dict[str, ManagedServer] = {}
    if "synapse" in wanted:
        servers["synapse"] = Synapse("synapse", 18108, Path("/tmp/bench-synapse"))
    if "ours" in wanted:
        servers["ours"] = Ours(
            "ours", 18008, Path("/tmp/bench-ours"), source_dir=args.ours_src, label=args.ours_label
        )
    sizes = QUICK if args.quick else DEFAULT
    profile_dir = Path(args.profile).resolve() if args.profile else None
    if profile_dir is not None and py_spy() is None:
        print("--profile: py-spy not found (PATH or $PY_SPY); no profiles", file=sys.stderr)
        profile_dir = None
    results: dict[str, dict] = {name: {} for name in ("synapse", "ours")}
    rss_at_start: dict[str, float | None] = {}
    try:
        failures = await asyncio.gather(
            *(_start(s, f"bench_{name}", args.admin_dsn) for name, s in servers.items())
        )
        async with new_session() as session:
            contexts = {}
            for (name, server), failure in zip(servers.items(), failures, strict=True):
                if failure:
                    print(f"{name} did not start: {failure}", file=sys.stderr)
                    for scenario in scenarios:
                        results[name][scenario] = {"status": f"server did not start: {failure}"}
                    continue
                target = Target(name, server.base_url, server.proc.pid)
                # Only ours is profiled: its profile is what says what bounds its figures.
                profile = profile_dir if name == "ours" else None
                contexts[name] = Context(target, sizes, session, profile_dir=profile)
                rss_at_start[name] = mib(target.rss())
            for i, scenario in enumerate(scenarios):
                # Alternate who goes first so neither always runs on a warmer machine.
                order = list(contexts) if i % 2 == 0 else list(reversed(contexts))
                for name in order:
                    result = await run_scenario(scenario, contexts[name])
                    results[name][scenario] = result
                    print(
                        f"{scenario:>20} {name:>8}: {result['status']} ({result['seconds']} s)",
                        file=sys.stderr,
                    )
    finally:
        for server in servers.values():
            await asyncio.to_thread(server.stop)
    measured_limits = None
    if not args.no_limits:
        # Once per run, with the servers under test stopped: the same PostgreSQL and
        # the same load generator, on an otherwise quiet machine (as far as we can tell).
        async with new_session() as session:
            measured_limits = await limits.measure(args.admin_dsn, sizes, session)
        for name, limit in measured_limits.items():
            print(f"{'limits':>20} {name}: {limit['status']}", file=sys.stderr)
    return {
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "mode": "quick" if args.quick else "default",
            "command": _command(args),
            "machine": await _machine(args.admin_dsn),
            "versions": {name: s.version for name, s in servers.items()},
            "scenarios": scenarios,
            "rss_at_start_mib": rss_at_start,
            "sizes": {k: v for k, v in vars(sizes).items()},
            "profile_dir": str(profile_dir) if profile_dir else None,
            "wall_seconds": round(time.perf_counter() - began, 1),
        },
        "results": results,
        "limits": measured_limits,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", help="comma-separated scenario names (dependencies kept)")
    parser.add_argument("--servers", default="synapse,ours", help="which servers to run")
    parser.add_argument(
        "--ours-src", type=Path, default=REPO_DIR, help="source tree of ours to run"
    )
    parser.add_argument("--ours-label", default="", help="noted beside ours' version")
    parser.add_argument("--admin-dsn", default=ADMIN_DSN, help="PostgreSQL to create DBs in")
    parser.add_argument(
        "--results-dir", default=str(BENCH_DIR / "results"), help="where the JSON goes"
    )
    parser.add_argument(
        "--markdown", default=str(BENCH_DIR / "RESULTS.md"), help="where the table goes"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy (PATH or $PY_SPY) samples ours during each scenario's measured phases "
        "into DIR/<scenario>-<phase>.txt; the results keep each profile's top functions",
    )
    parser.add_argument(
        "--no-limits",
        action="store_true",
        help="skip the physical limits (pgbench -N commits/s, bare aiohttp requests/s)",
    )
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()  # the load generator must not be the bottleneck
    except ImportError:
        pass
    run = asyncio.run(_run(args))
    json_path = report.write(run, Path(args.results_dir), Path(args.markdown))
    print(report.markdown(run))
    print(f"wrote {json_path} and {args.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
