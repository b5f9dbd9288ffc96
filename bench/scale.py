"""Scale benchmarks of this server alone: many long-polls in one process, and the same
send + sync load on 1, 2 and 4 processes behind nginx (issue 16, items 3 and 4).

    flock /tmp/bench.lock .venv/bin/python -m bench.scale [--only scale_out,longpolls_10k]
        [--processes 1,2,4] [--quick]

scale_out: for each process count, a fresh database, that many workers of ours behind
Debian's nginx (the shipped deploy/nginx site, TLS: the first worker writes events, the
others answer /sync, the rest is hashed by access token), the same users and rooms,
every user in a /sync long-poll loop, and a fixed number of messages sent by a fixed
number of concurrent senders. Figures: msgs/s sent, events/s delivered,
syncs/s answered, send and delivery latency, each worker's RSS and its share of /syncs.

longpolls_10k: one process; 10,000 users (registered through an appservice, so that
argon2 hashing does not dominate the setup; the server restarts without it before the
measurement) join one room, each has its initial sync and then holds one idle /sync
long-poll. Figures: RSS per long-poll, then two messages to all of them, one at a time:
p50/p95/p99/max delivery (with --profile, py-spy samples the server during each).

Both also measure the database: rows and bytes (pg_total_relation_size, indexes and TOAST
included) added per user and per message, for deploy/SIZING.md. Every run is bounded in
count and time; the load average is recorded with each figure, since other work on the
machine moves them. Writes bench/results/scale-<date>.json and bench/SCALE_RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import os
import resource
import secrets
import shutil
import ssl
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import yaml

from bench.client import PREFIX, MatrixHTTPError, User, new_session, register, request
from bench.cluster import (
    SERVER_NAME,
    Cluster,
    ClusterConfig,
    CpuMeter,
    size_delta,
    table_sizes,
)
from bench.memory import PeakSampler, mib
from bench.profile import profiled
from bench.scenarios.base import IDLE_FILTER, PASSWORD, join_all, ms, run_pool
from bench.scenarios.delivery import MARK, Receivers
from bench.servers import BENCH_DIR, recreate_database
from bench.stats import rate, summarize

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
RUN_DIR = Path("/tmp/bench-scale")
# This helper's port range: nginx on 28600, scale-out workers from 28610 (client, metrics
# pairs), the long-poll server on 28650/28651. Below 32768:
# Linux hands out ports from 32768 up to client sockets, and a load of ten thousand
# connections took the one a worker was about to listen on.
FRONT_PORT = 28600
WORKERS_PORT = 28610
LONGPOLL_PORT = 28650
# Lazy members as real clients ask; a timeline long enough that a busy room's messages
# between two syncs are all in the response (a `limited` one would count as missed).
LOAD_FILTER = orjson.dumps(
    {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 100}}}
).decode()


@dataclass(frozen=True)
class ScaleSizes:
    processes: tuple[int, ...] = (1, 2, 4)
    users: int = 128
    rooms: int = 16
    messages: int = 3000
    senders: int = 32  # concurrent PUTs
    setup_concurrency: int = 16
    delivery_wait_s: float = 60.0
    scale_out_cap_s: float = 420.0  # per process count
    longpolls: int = 10_000
    fanout_messages: int = 2
    fanout_timeout_s: float = 150.0
    ramp_batch: int = 500
    longpolls_cap_s: float = 1200.0


DEFAULT = ScaleSizes()
QUICK = dataclasses.replace(
    DEFAULT, processes=(1, 2), users=16, rooms=4, messages=100, longpolls=200, fanout_messages=2
)


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _raise_fd_limit() -> int:
    """Thousands of sockets in this process (and in the servers, which inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# --- scale-out ------------------------------------------------------------------------


class SyncLoad:
    """Every user in a /sync loop, stamping the arrival of each marked message."""

    def __init__(self, users: list[User]):
        self.users = users
        self.sent_at: dict[int, float] = {}
        self.delivery: list[float] = []
        self.last_arrival = 0.0
        self.syncs = 0
        self.limited = 0
        self.errors: list[str] = []
        self.expected = 0  # deliveries that complete the load
        self.complete = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._loop(u)) for u in self.users]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _loop(self, user: User) -> None:
        try:
            while True:
                resp = await user.sync(since=user.since, timeout_ms=30_000, filter_json=LOAD_FILTER)
                now = time.perf_counter()
                self.syncs += 1
                user.since = resp.body["next_batch"]
                for room in resp.body.get("rooms", {}).get("join", {}).values():
                    timeline = room.get("timeline", {})
                    self.limited += bool(timeline.get("limited"))
                    for event in timeline.get("events", []):
                        seq = event.get("content", {}).get(MARK)
                        if isinstance(seq, int) and seq in self.sent_at:
                            self.delivery.append(now - self.sent_at[seq])
                            self.last_arrival = now
                            if len(self.delivery) >= self.expected:
                                self.complete.set()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a dead syncer shows up as missed deliveries
            self.errors.append(f"{type(e).__name__}: {e}")


async def _scale_out_once(
    count: int, sizes: ScaleSizes, admin_dsn: str, profile_dir: Path | None
) -> dict:
    dsn = await recreate_database(admin_dsn, "bench_scale_out")
    config = ClusterConfig(RUN_DIR / f"scale-out-{count}", dsn)
    shutil.rmtree(config.data_dir, ignore_errors=True)
    cluster = Cluster(config, count, WORKERS_PORT, FRONT_PORT)
    assert cluster.nginx is not None
    tls = ssl.create_default_context(cafile=str(cluster.nginx.ca_path))
    result: dict = {"processes": count, "loadavg_before": _loadavg(), "status": "ok"}
    figures: dict = {}
    result["figures"] = figures
    load: SyncLoad | None = None
    try:
        async with new_session(tls) as session, asyncio.timeout(sizes.scale_out_cap_s):
            await cluster.start(session)
            base = cluster.base_url
            users: list[User] = [None] * sizes.users  # type: ignore[list-item]

            async def reg(i: int) -> None:
                users[i] = await register(session, base, f"scale{i}", PASSWORD)

            await run_pool(sizes.users, sizes.setup_concurrency, reg)
            rooms = [await users[g].create_room(name=f"scale {g}") for g in range(sizes.rooms)]
            room_of = {i: rooms[i % sizes.rooms] for i in range(sizes.users)}

            async def join(i: int) -> None:
                if i >= sizes.rooms:
                    await users[i].join(room_of[i])
                users[i].since = (await users[i].sync(filter_json=LOAD_FILTER)).body["next_batch"]

            await run_pool(sizes.users, sizes.setup_concurrency, join)
            before = await table_sizes(dsn)
            load = SyncLoad(users)
            load.start()
            await asyncio.sleep(1.0)  # every long-poll parked
            send_times: list[float] = []
            syncs_at_start = load.syncs
            load.expected = sizes.messages * (sizes.users // sizes.rooms)

            refused: list[str] = []

            async def send(k: int) -> None:
                i = k % sizes.users
                load.sent_at[k] = time.perf_counter()
                try:
                    resp = await users[i].send_text(room_of[i], f"scale {k}", **{MARK: k})
                except MatrixHTTPError as e:  # counted, not fatal: the rest still measures
                    error = e.body.get("error") if isinstance(e.body, dict) else None
                    refused.append(f"{e}: {error}")
                    load.expected -= sizes.users // sizes.rooms
                    return
                send_times.append(resp.seconds)

            with contextlib.ExitStack() as stack:
                samplers = [
                    stack.enter_context(PeakSampler(w.pid)) for w in cluster.workers if w.pid
                ]
                cpu = CpuMeter(cluster, "bench_scale_out", admin_dsn)
                await cpu.start()
                for n, worker in enumerate(cluster.workers):
                    out = profile_dir / f"worker{n}-of-{count}.txt" if profile_dir else None
                    taken = stack.enter_context(profiled(worker.pid, out))
                    if taken is not None:
                        result.setdefault("profiles", []).append(str(taken))
                began = time.perf_counter()
                await run_pool(sizes.messages, sizes.senders, send)
                sent = time.perf_counter()
                if len(load.delivery) >= load.expected:  # refused sends lowered it
                    load.complete.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(load.complete.wait(), sizes.delivery_wait_s)
                end = max(load.last_arrival, sent)
                syncs = load.syncs - syncs_at_start
                figures.update(await cpu.stop())
            figures["msgs_per_s"] = rate(sizes.messages, sent - began)
            figures["delivered_events_per_s"] = rate(len(load.delivery), end - began)
            figures["syncs_per_s"] = rate(syncs, end - began)
            figures["send_p50_ms"] = ms(summarize(send_times)["p50"])
            figures["send_p99_ms"] = ms(summarize(send_times)["p99"])
            delivery = summarize(load.delivery)
            figures["delivery_p50_ms"] = ms(delivery["p50"])
            figures["delivery_p99_ms"] = ms(delivery["p99"])
            figures["missed_deliveries"] = load.expected - len(load.delivery)
            figures["sends_refused"] = len(refused)
            if refused:
                result["first_refused_send"] = refused[0]
            figures["limited_timelines"] = load.limited
            figures["worker_rss_mib"] = [mib(w.rss()) for w in cluster.workers]
            figures["worker_rss_peak_mib"] = [mib(s.peak) for s in samplers]
            figures["nginx_rss_mib"] = mib(cluster.nginx.rss())
            figures["worker_sync_requests"] = [
                await w.metric(session, "matrix_http_requests_total", "/sync")
                for w in cluster.workers
            ]
            await load.stop()
            load = None
            result["db_per_message"] = size_delta(before, await table_sizes(dsn), sizes.messages)
    except TimeoutError:
        result["status"] = f"stopped at its {sizes.scale_out_cap_s} s time cap"
    finally:
        if load is not None:
            await load.stop()
            if load.errors:
                result["sync_errors"] = load.errors[:3]
        await asyncio.to_thread(cluster.stop)
    result["loadavg_after"] = _loadavg()
    return result


async def scale_out(sizes: ScaleSizes, admin_dsn: str, profile_dir: Path | None) -> dict:
    runs = []
    for count in sizes.processes:
        run = await _scale_out_once(count, sizes, admin_dsn, profile_dir)
        print(f"scale_out {count} processes: {run['status']} {run['figures']}", file=sys.stderr)
        runs.append(run)
    return {
        "sizes": {
            "users": sizes.users,
            "rooms": sizes.rooms,
            "messages": sizes.messages,
            "concurrent_senders": sizes.senders,
        },
        "runs": runs,
    }


# --- many idle long-polls in one process ------------------------------------------------


def _appservice_file(directory: Path) -> tuple[Path, str]:
    """A registration with no URL (no traffic) whose namespace holds the bench users."""
    as_token = secrets.token_hex(16)
    path = directory / "bench-appservice.yaml"
    server = SERVER_NAME.replace(".", r"\.")
    registration = {
        "id": "bench-scale",
        "url": None,
        "as_token": as_token,
        "hs_token": secrets.token_hex(16),
        "sender_localpart": "_scalebot",
        "namespaces": {"users": [{"exclusive": True, "regex": f"@lp[0-9]+:{server}"}]},
        "rate_limited": False,
    }
    path.write_text(yaml.safe_dump(registration))
    return path, as_token


async def _register_via_appservice(session, base: str, as_token: str, localpart: str) -> User:
    body = {"type": "m.login.application_service", "username": localpart}
    reply = (
        await request(session, base, "POST", f"{PREFIX}/register", token=as_token, body=body)
    ).body
    return User(session, base, reply["user_id"], reply["access_token"], reply.get("device_id"))


async def _parked(cluster: Cluster, session, want: int, timeout_s: float) -> float:
    """Waits until the server holds `want` long-polls (its own gauge); returns the count."""
    deadline = time.monotonic() + timeout_s
    parked = 0.0
    while time.monotonic() < deadline:
        parked = await cluster.workers[0].metric(session, "matrix_sync_longpolls_open")
        if parked >= want:
            break
        await asyncio.sleep(0.5)
    return parked


async def _stable_rss(cluster: Cluster, settle_s: float = 10.0) -> int | None:
    worker = cluster.workers[0]
    last = worker.rss()
    for _ in range(int(settle_s / 0.5)):
        await asyncio.sleep(0.5)
        now = worker.rss()
        if last is not None and now is not None and abs(now - last) <= 0.005 * last:
            return now
        last = now
    return last


async def longpolls_10k(sizes: ScaleSizes, admin_dsn: str, profile_dir: Path | None) -> dict:
    n = sizes.longpolls
    dsn = await recreate_database(admin_dsn, "bench_scale_longpolls")
    data_dir = RUN_DIR / "longpolls"
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    as_file, as_token = _appservice_file(data_dir)
    config = ClusterConfig(data_dir, dsn, max_sync_timeout_ms=600_000, app_services=[str(as_file)])
    cluster = Cluster(config, 1, LONGPOLL_PORT, None)
    figures: dict = {}
    result: dict = {"longpolls": n, "status": "ok", "figures": figures}
    result["loadavg_before"] = _loadavg()
    rx: Receivers | None = None
    try:
        async with new_session() as session, asyncio.timeout(sizes.longpolls_cap_s):
            await cluster.start(session)
            fresh = await table_sizes(dsn)
            users: list[User] = [None] * (n + 1)  # type: ignore[list-item]

            async def reg(i: int) -> None:
                users[i] = await _register_via_appservice(
                    session, cluster.base_url, as_token, f"lp{i}"
                )

            began = time.perf_counter()
            await run_pool(n + 1, 32, reg)
            figures["appservice_registrations_per_s"] = rate(n + 1, time.perf_counter() - began)
            # The measurement runs without the appservice: with it every event of the
            # room would also be queued for it.
            await asyncio.to_thread(cluster.stop)
            config.app_services = []
            await cluster.start(session)
            sender, holders = users[0], users[1:]
            room_id = await sender.create_room(name="ten thousand")
            began = time.perf_counter()
            await join_all(holders, room_id, 32)
            figures["joins_per_s"] = rate(n, time.perf_counter() - began)
            result["db_per_user"] = size_delta(fresh, await table_sizes(dsn), n + 1)

            # Each holder has had its initial sync from this server before it parks, as
            # any client coming online has: the per-user state a woken /sync reads (push
            # rules, unread counts) is what a server in use holds.
            async def initial(i: int) -> None:
                resp = await holders[i].sync(filter_json=IDLE_FILTER)
                holders[i].since = resp.body["next_batch"]

            began = time.perf_counter()
            await run_pool(n, 32, initial)
            figures["initial_syncs_per_s"] = rate(n, time.perf_counter() - began)
            rss_idle = await _stable_rss(cluster)
            figures["rss_before_longpolls_mib"] = mib(rss_idle)
            rx = Receivers(holders, room_id, IDLE_FILTER, "offline", longpoll_ms=300_000)
            await rx.start_gradually(sizes.ramp_batch, 0.25)
            figures["longpolls_parked"] = parked = await _parked(cluster, session, n, 120)
            # Polls the holders started: more than one each means some were answered
            # before anything was sent to them.
            figures["polls_started_before_fanout"] = rx.polls_started
            rss_held = await _stable_rss(cluster)
            figures["rss_with_longpolls_mib"] = mib(rss_held)
            if rss_idle and rss_held and parked:
                figures["rss_per_longpoll_kib"] = (rss_held - rss_idle) / parked / 1024
            result["loadavg_before_fanout"] = _loadavg()
            for seq in range(sizes.fanout_messages):
                out = profile_dir / f"fanout-{seq}.txt" if profile_dir else None
                with profiled(cluster.workers[0].pid, out) as taken:
                    missed = await rx.send_and_wait(sender, seq, sizes.fanout_timeout_s)
                if taken is not None:
                    result.setdefault("profiles", []).append(str(taken))
                figures["missed_deliveries"] = figures.get("missed_deliveries", 0) + missed
                figures["rss_after_fanout_mib"] = mib(cluster.workers[0].rss())
                if seq + 1 < sizes.fanout_messages:
                    # Every holder back in its long-poll before the next message.
                    await _parked(cluster, session, n, 60)
    except TimeoutError:
        result["status"] = f"stopped at its {sizes.longpolls_cap_s} s time cap"
    finally:
        if rx is not None:
            # Also when cut short: whatever arrived counts.
            per_message = []
            for seq in sorted(rx.latencies):
                one = summarize(rx.latencies[seq])
                per_message.append(
                    {"delivered": one["n"]} | {k: ms(one[k]) for k in ("p50", "p95", "p99", "max")}
                )
            figures["fanout_per_message_ms"] = per_message
            overall = summarize(rx.all_latencies())
            for k in ("p50", "p95", "p99", "max"):
                figures[f"fanout_{k}_ms"] = ms(overall[k])
            if rx.errors:
                result["longpoll_errors"] = [len(rx.errors), rx.errors[0]]
            await rx.stop()
        await asyncio.to_thread(cluster.stop)
    result["loadavg_after"] = _loadavg()
    print(f"longpolls_10k: {result['status']} {figures}", file=sys.stderr)
    return result


# --- the driver -------------------------------------------------------------------------

SCENARIOS = {"longpolls_10k": longpolls_10k, "scale_out": scale_out}


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    if isinstance(value, dict):
        return " ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    return str(value)


def markdown(run: dict) -> str:
    meta = run["meta"]
    lines = [
        "# Scale benchmark results",
        "",
        f"Date: {meta['date']} · command: `{meta['command']}` · machine: {meta['machine']}",
        "",
    ]
    lp = run["results"].get("longpolls_10k")
    if lp:
        lines += [
            f"## {lp['longpolls']:,} idle long-polls in one process ({lp['status']})",
            "",
            f"Load average before / at fan-out / after: {lp['loadavg_before']} / "
            f"{lp.get('loadavg_before_fanout')} / {lp['loadavg_after']}",
            "",
            "| figure | value |",
            "| --- | ---: |",
            *(f"| {k} | {_fmt(v)} |" for k, v in lp["figures"].items()),
            "",
        ]
    so = run["results"].get("scale_out")
    if so:
        keys = [k for k in so["runs"][0]["figures"]] if so["runs"] else []
        lines += [
            "## Scale-out: the same load on 1, 2, 4 processes behind nginx",
            "",
            f"Load: {so['sizes']}",
            "",
            "| figure | " + " | ".join(f"{r['processes']} proc" for r in so["runs"]) + " |",
            "| --- |" + " ---: |" * len(so["runs"]),
            *(
                f"| {k} | " + " | ".join(_fmt(r["figures"].get(k)) for r in so["runs"]) + " |"
                for k in keys
            ),
            "| status | " + " | ".join(r["status"] for r in so["runs"]) + " |",
            "| load avg before → after | "
            + " | ".join(f"{r['loadavg_before']} → {r['loadavg_after']}" for r in so["runs"])
            + " |",
            "",
        ]
    return "\n".join(lines)


async def _run(args: argparse.Namespace) -> dict:
    sizes = QUICK if args.quick else DEFAULT
    if args.processes:
        sizes = dataclasses.replace(
            sizes, processes=tuple(int(p) for p in args.processes.split(","))
        )
    if args.longpolls:
        sizes = dataclasses.replace(sizes, longpolls=args.longpolls)
    names = [n.strip() for n in (args.only or ",".join(SCENARIOS)).split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenarios: {unknown}; known: {list(SCENARIOS)}")
    results = {}
    for name in names:
        profile_dir = Path(args.profile) / name if args.profile else None
        results[name] = await SCENARIOS[name](sizes, args.admin_dsn, profile_dir)
    from bench.run import _machine

    return {
        "meta": {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "command": "python -m bench.scale " + " ".join(sys.argv[1:]),
            "machine": await _machine(args.admin_dsn),
            "sizes": dataclasses.asdict(sizes),
            "fd_limit": _raise_fd_limit(),
        },
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", help="comma-separated: longpolls_10k, scale_out")
    parser.add_argument("--processes", help="process counts for scale_out, e.g. 1,2,4")
    parser.add_argument(
        "--longpolls", type=int, help="long-polls for longpolls_10k (10,000 by default)"
    )
    parser.add_argument("--admin-dsn", default=ADMIN_DSN, help="PostgreSQL to create DBs in")
    parser.add_argument("--markdown", default=str(BENCH_DIR / "SCALE_RESULTS.md"))
    parser.add_argument(
        "--profile", help="directory for py-spy profiles of the server during the fan-out"
    )
    args = parser.parse_args(argv)
    _raise_fd_limit()
    try:
        import uvloop

        uvloop.install()  # the load generator must not be the bottleneck
    except ImportError:
        pass
    run = asyncio.run(_run(args))
    results_dir = BENCH_DIR / "results"
    results_dir.mkdir(exist_ok=True)
    stamp = run["meta"]["date"].replace(":", "-")
    json_path = results_dir / f"scale-{stamp}.json"
    json_path.write_bytes(orjson.dumps(run, option=orjson.OPT_INDENT_2))
    text = markdown(run)
    Path(args.markdown).write_text(text + "\n")
    print(text)
    print(f"wrote {json_path} and {args.markdown}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
