"""Registration rate: open registration with the dummy auth stage, as a bot farm would."""

from __future__ import annotations

import time

from bench.scenarios.base import Context, Recorder, ms
from bench.stats import rate, summarize


async def registration(ctx: Context, rec: Recorder) -> None:
    n = ctx.sizes.register_users
    began = time.perf_counter()
    durations = await ctx.register_users(n, ctx.sizes.register_concurrency)
    elapsed = time.perf_counter() - began
    rec.figure("registrations_per_s", rate(len(durations), elapsed), "reg/s", "higher")
    rec.figure("register_p50_ms", ms(summarize(durations)["p50"]), "ms", "lower")
    rec.note(f"{len(durations)} registrations, concurrency {ctx.sizes.register_concurrency}")


async def user_pool(ctx: Context, rec: Recorder) -> None:
    """Registers every user the later scenarios need, so their time caps measure
    their own work. Also a second registration figure, at higher concurrency."""
    missing = ctx.sizes.pool_size - len(ctx.users)
    began = time.perf_counter()
    durations = await ctx.register_users(max(0, missing), ctx.sizes.setup_concurrency)
    elapsed = time.perf_counter() - began
    rec.figure("pool_registrations_per_s", rate(len(durations), elapsed), "reg/s", "higher")
    rec.note(f"{len(ctx.users)} users, concurrency {ctx.sizes.setup_concurrency}")
