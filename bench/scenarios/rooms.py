"""Room creation rate, and joining a room that already has a thousand members."""

from __future__ import annotations

import asyncio
import time

from bench.memory import mib
from bench.scenarios.base import Context, Recorder, join_all, ms, run_pool
from bench.stats import rate, summarize


async def room_creation(ctx: Context, rec: Recorder) -> None:
    """User 0 creates the rooms it will later initial-sync (public_chat preset)."""
    (creator,) = (await ctx.ensure_users(1))[:1]
    n = ctx.sizes.created_rooms
    rooms: list[str] = []
    durations: list[float] = []

    async def one(i: int) -> None:
        began = time.perf_counter()
        rooms.append(await creator.create_room(name=f"bench room {i}"))
        durations.append(time.perf_counter() - began)

    async with ctx.measured("create"):
        began = time.perf_counter()
        try:
            await run_pool(n, ctx.sizes.create_concurrency, one)
        finally:
            ctx.state["created_rooms"] = rooms
        elapsed = time.perf_counter() - began
    rec.figure("rooms_created_per_s", rate(len(rooms), elapsed), "rooms/s", "higher")
    rec.figure("create_room_p50_ms", ms(summarize(durations)["p50"]), "ms", "lower")


async def _settled_rss(ctx: Context) -> int | None:
    # Let the server finish work queued behind the last response before reading it.
    await asyncio.sleep(1.0)
    return ctx.target.rss()


async def big_room_join(ctx: Context, rec: Recorder) -> None:
    """Fills one room to big_room_members, then times single joins into it.

    The memory the room's state costs is the server's RSS growth while the
    room fills (allocators rarely give memory back, so this is an upper bound
    of what the state keeps, including caches warmed on the way).
    """
    sizes = ctx.sizes
    users = await ctx.ensure_users(2 + sizes.big_room_members + sizes.big_room_joiners)
    creator = users[1]
    members = users[2 : 1 + sizes.big_room_members]  # creator + these = big_room_members
    joiners = users[
        1 + sizes.big_room_members : 1 + sizes.big_room_members + sizes.big_room_joiners
    ]

    rss_before = await _settled_rss(ctx)
    room_id = await creator.create_room(name="big room")
    async with ctx.measured("fill"):
        began = time.perf_counter()
        fill = await join_all(members, room_id, sizes.setup_concurrency)
        fill_elapsed = time.perf_counter() - began
    ctx.state["big_room"] = (room_id, [creator, *members])
    rss_full = await _settled_rss(ctx)
    rec.figure("fill_joins_per_s", rate(len(fill), fill_elapsed), "joins/s", "higher")
    if rss_before is not None and rss_full is not None:
        rec.figure("room_state_rss_mib", mib(rss_full - rss_before), "MiB", "lower")

    # Joins into the full room, one at a time so each sees the whole room's state.
    async with ctx.measured("single_joins"):
        single = [(await j.join(room_id)).seconds for j in joiners]
    ctx.state["big_room"] = (room_id, [creator, *members, *joiners])
    rec.figure("join_full_room_p50_ms", ms(summarize(single)["p50"]), "ms", "lower")
    rec.figure("join_full_room_max_ms", ms(summarize(single)["max"]), "ms", "lower")
    rec.note(f"room of {1 + len(members)} members; {len(single)} timed joins")
