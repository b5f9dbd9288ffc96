"""Plain requests/s: GET /account/whoami (an access-token check and nothing else) from a
fixed number of clients, each one request after the other, for a fixed time.

The same load (`request_rate`) measures the bare aiohttp handler of bench/limits.py, the
most requests/s this machine's Python HTTP stack answers: the limit beside this figure.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import psutil

from bench.client import PREFIX, request
from bench.scenarios.base import Context, Recorder, ms
from bench.stats import rate, summarize

WHOAMI_PATH = f"{PREFIX}/account/whoami"


async def request_rate(
    session: aiohttp.ClientSession,
    base_url: str,
    token: str,
    concurrency: int,
    seconds: float,
    durations: list[float],
) -> float:
    """`concurrency` clients GET whoami one request after the other for `seconds`;
    each request's seconds go into `durations` as it completes (a caller cut short
    still has them). Returns the elapsed seconds."""
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < deadline:
            resp = await request(session, base_url, "GET", WHOAMI_PATH, token=token)
            durations.append(resp.seconds)

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return time.perf_counter() - began


def cpu_seconds(pid: int | None) -> float | None:
    """CPU seconds (user + system) of a process and its children so far."""
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
        return sum(sum(p.cpu_times()[:2]) for p in procs)
    except psutil.NoSuchProcess:
        return None


class CpuMeter:
    """Cores used by the load generator (this process) and by a server while a load
    runs: a load generator near 1.0 core is the bottleneck, not the server."""

    def __init__(self, server_pid: int | None):
        self.server_pid = server_pid

    def __enter__(self) -> CpuMeter:
        self._began = time.perf_counter()
        self._own = time.process_time()
        self._server = cpu_seconds(self.server_pid)
        return self

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self._began
        self.loadgen_cores = round((time.process_time() - self._own) / wall, 2)
        after = cpu_seconds(self.server_pid)
        self.server_cores = (
            round((after - self._server) / wall, 2)
            if after is not None and self._server is not None
            else None
        )

    def note(self) -> str:
        return f"CPU cores used: load generator {self.loadgen_cores}, server {self.server_cores}"


def rate_figures(rec: Recorder, durations: list[float], elapsed: float, concurrency: int) -> None:
    s = summarize(durations)
    rec.figure("whoami_per_s", rate(len(durations), elapsed), "req/s", "higher")
    rec.figure("whoami_p50_ms", ms(s["p50"]), "ms", "lower")
    rec.figure("whoami_p99_ms", ms(s["p99"]), "ms", "lower")
    rec.note(f"{len(durations)} requests from {concurrency} concurrent clients")


async def whoami(ctx: Context, rec: Recorder) -> None:
    sizes = ctx.sizes
    user = (await ctx.ensure_users(1))[0]
    await user.call("GET", WHOAMI_PATH)  # the connection and any token cache warm
    durations: list[float] = []
    elapsed = sizes.whoami_seconds  # replaced by the measured time when it completes
    try:
        async with ctx.measured("requests"):
            with CpuMeter(ctx.target.pid) as cpu:
                elapsed = await request_rate(
                    ctx.session,
                    ctx.target.base_url,
                    user.access_token,
                    sizes.whoami_concurrency,
                    sizes.whoami_seconds,
                    durations,
                )
            rec.note(cpu.note())
    finally:  # a run cut short keeps what completed
        rate_figures(rec, durations, elapsed, sizes.whoami_concurrency)
