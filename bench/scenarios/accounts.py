"""Registration rate: open registration with the dummy auth stage, as a bot farm would."""

from __future__ import annotations

import time

from bench.scenarios.base import Context, Recorder, ms
from bench.stats import rate, summarize


async def _timed_registrations(
    ctx: Context, rec: Recorder, count: int, concurrency: int, prefix: str
) -> None:
    durations: list[float] = []
    async with ctx.measured("register"):
        began = time.perf_counter()
        try:
            await ctx.register_users(count, concurrency, durations)
        finally:  # figures of what completed, also when the time cap cut it short
            elapsed = time.perf_counter() - began
            rate_ = rate(len(durations), elapsed)
            rec.figure(f"{prefix}registrations_per_s", rate_, "reg/s", "higher")
            rec.figure(f"{prefix}register_p50_ms", ms(summarize(durations)["p50"]), "ms", "lower")
            rec.note(f"{len(durations)} registrations, concurrency {concurrency}")


async def registration(ctx: Context, rec: Recorder) -> None:
    await _timed_registrations(
        ctx, rec, ctx.sizes.register_users, ctx.sizes.register_concurrency, ""
    )


async def user_pool(ctx: Context, rec: Recorder) -> None:
    """Registers every user the later scenarios need, so their time caps measure
    their own work. Also a second registration figure, at higher concurrency."""
    missing = max(0, ctx.sizes.pool_size - len(ctx.users))
    await _timed_registrations(ctx, rec, missing, ctx.sizes.setup_concurrency, "pool_")
