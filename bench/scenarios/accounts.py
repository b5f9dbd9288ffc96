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
