"""/sync: delivery latency to waiting long-polls, initial and incremental sync cost,
and a thousand idle long-polls (their memory, and one message to all of them)."""

from __future__ import annotations

import asyncio

from bench.client import PREFIX, login, new_session, request
from bench.memory import mib
from bench.scenarios.base import (
    IDLE_FILTER,
    PASSWORD,
    SYNC_FILTER,
    Context,
    Recorder,
    join_all,
    ms,
)
from bench.scenarios.delivery import Receivers
from bench.stats import summarize


def _latency_figures(rec: Recorder, prefix: str, latencies: list[float]) -> None:
    s = summarize(latencies)
    for p in ("p50", "p95", "p99"):
        rec.figure(f"{prefix}_{p}_ms", ms(s[p]), "ms", "lower")


async def delivery_latency(ctx: Context, rec: Recorder) -> None:
    """Receivers in one room, each in a long-poll; one sender, one message at a time."""
    sizes = ctx.sizes
    users = await ctx.ensure_users(2 + sizes.latency_receivers)
    sender, receivers = users[1], users[2 : 2 + sizes.latency_receivers]
    room_id = await sender.create_room(name="latency room")
    await join_all(receivers, room_id, sizes.setup_concurrency)

    rx = Receivers(receivers, room_id, SYNC_FILTER, presence=None)
    await rx.initial_sync(sizes.setup_concurrency)
    rx.start()
    missing = 0
    try:
        await asyncio.sleep(0.5)  # let the first long-polls reach the server
        async with ctx.measured("deliver"):
            for seq in range(sizes.latency_messages):
                missing += await rx.send_and_wait(sender, seq, sizes.delivery_timeout_s)
    finally:
        await rx.stop()
        _latency_figures(rec, "delivery", rx.all_latencies())
        rec.figure("missed_deliveries", missing, "count", "lower")
        rec.note(f"{len(receivers)} receivers x {sizes.latency_messages} messages")
        if rx.errors:
            rec.note(f"{len(rx.errors)} receivers failed, first: {rx.errors[0]}")


async def initial_sync(ctx: Context, rec: Recorder) -> None:
    """User 0 is in every created room; each initial sync is from a fresh login
    (a new device), so no server can answer it from a per-device response cache."""
    sizes = ctx.sizes
    rooms = ctx.require("created_rooms", "room_creation")
    owner = (await ctx.ensure_users(1))[0]
    localpart = owner.user_id[1:].split(":")[0]
    durations, sizes_b = [], []
    # The logins (password hashing) first, so the measured phase is the syncs alone.
    devices = [
        await login(ctx.session, ctx.target.base_url, localpart, PASSWORD)
        for _ in range(sizes.initial_syncs)
    ]
    async with ctx.measured("initial"):
        for device in devices:
            resp = await device.sync()
            durations.append(resp.seconds)
            sizes_b.append(resp.nbytes)
            device.since = resp.body["next_batch"]
    device = devices[-1]
    rec.figure("initial_sync_ms", ms(summarize(durations)["p50"]), "ms", "lower")
    rec.figure("initial_sync_kib", summarize(sizes_b)["p50"] / 1024, "KiB", "lower")
    rec.note(f"user in {len(rooms)} rooms, no filter, {len(durations)} initial syncs")

    # Incremental: one new message in one of the rooms, then an immediate /sync.
    inc_times, inc_bytes, empty_times = [], [], []
    async with ctx.measured("incremental"):  # the sends are in it too
        for k in range(sizes.incremental_syncs):
            await device.send_text(rooms[k % len(rooms)], f"incremental {k}")
            resp = await device.sync(since=device.since)
            device.since = resp.body["next_batch"]
            inc_times.append(resp.seconds)
            inc_bytes.append(resp.nbytes)
            empty = await device.sync(since=device.since)  # nothing new: the floor cost
            device.since = empty.body["next_batch"]
            empty_times.append(empty.seconds)
    rec.figure("incremental_sync_ms", ms(summarize(inc_times)["p50"]), "ms", "lower")
    rec.figure("incremental_sync_bytes", summarize(inc_bytes)["p50"], "B", "lower")
    rec.figure("empty_incremental_sync_ms", ms(summarize(empty_times)["p50"]), "ms", "lower")


async def _stable_rss(ctx: Context, settle_s: float = 8.0) -> int | None:
    """RSS once it stops moving (two readings 0.5 s apart within 0.5 %), or after settle_s."""
    last = ctx.target.rss()
    for _ in range(int(settle_s / 0.5)):
        await asyncio.sleep(0.5)
        now = ctx.target.rss()
        if last is not None and now is not None and abs(now - last) <= 0.005 * last:
            return now
        last = now
    return last


async def idle_longpolls(ctx: Context, rec: Recorder) -> None:
    """Members of the big room each hold one idle /sync long-poll; then one message."""
    sizes = ctx.sizes
    room_id, members = ctx.require("big_room", "big_room_join")
    sender = members[0]
    holders = members[1 : 1 + sizes.idle_longpolls]
    rx = Receivers(holders, room_id, IDLE_FILTER, presence="offline")
    await rx.initial_sync(sizes.setup_concurrency)

    rss_idle = await _stable_rss(ctx)
    rx.start()
    missing = 0
    try:
        await asyncio.sleep(1.0)  # every request written; the server parks them
        rss_held = await _stable_rss(ctx)
        if rss_idle is not None and rss_held is not None:
            per_poll = (rss_held - rss_idle) / max(1, len(holders))
            rec.figure("rss_per_longpoll_kib", per_poll / 1024, "KiB", "lower")
            rec.figure("rss_with_longpolls_mib", mib(rss_held), "MiB", "lower")
        async with ctx.measured("fanout"):
            missing = await rx.send_and_wait(sender, 0, sizes.fanout_timeout_s)
    finally:
        await rx.stop()
        latencies = rx.all_latencies()
        _latency_figures(rec, "fanout", latencies)
        rec.figure("fanout_all_ms", ms(summarize(latencies)["max"]), "ms", "lower")
        rec.figure("missed_deliveries", missing, "count", "lower")
        rec.note(f"{len(holders)} long-polls in a room of {len(members)} members")
        if rx.errors:
            rec.note(f"{len(rx.errors)} long-polls failed, first: {rx.errors[0]}")


async def longpoll_cycles(ctx: Context, rec: Recorder) -> None:
    """1,000 /sync long-polls (timeout 30 s) opened, then abandoned by their clients
    (connections closed mid-poll), five times; the server's RSS after each cycle. What
    abandoned long-polls leave behind shows as growth from cycle to cycle."""
    sizes = ctx.sizes
    users = await ctx.ensure_users(sizes.cycle_users)
    for user in users:
        user.since = (await user.sync(timeout_ms=0, filter_json=IDLE_FILTER)).body["next_batch"]
    rss_before = await _stable_rss(ctx)
    rec.figure("rss_before_mib", mib(rss_before), "MiB", "lower")
    after: list[int | None] = []
    async with ctx.measured("cycles"):
        await _cycles(ctx, rec, users, after)
    if after[0] and after[-1]:
        growth = (after[-1] - after[0]) / after[0] * 100
        rec.figure("rss_growth_after_first_cycle_pct", growth, "%", "lower")
    rec.note(f"{sizes.cycle_longpolls} long-polls over {len(users)} users, {sizes.cycles} cycles")


async def _cycles(ctx: Context, rec: Recorder, users: list, after: list[int | None]) -> None:
    sizes = ctx.sizes
    for cycle in range(1, sizes.cycles + 1):
        # A session (and connections) of its own per cycle: closing it closes them all.
        async with new_session() as session:

            async def hold(user, session=session) -> None:
                await request(
                    session,
                    ctx.target.base_url,
                    "GET",
                    f"{PREFIX}/sync",
                    token=user.access_token,
                    params={"since": user.since, "timeout": "30000", "filter": IDLE_FILTER},
                )

            polls = [
                asyncio.ensure_future(hold(users[i % len(users)]))
                for i in range(sizes.cycle_longpolls)
            ]
            await asyncio.sleep(3.0)  # every request written and parked by the server
            failed = [p for p in polls if p.done() and p.exception() is not None]
            if failed:
                rec.note(f"cycle {cycle}: {len(failed)} long-polls failed: {failed[0].exception()}")
            for poll in polls:
                poll.cancel()
            await asyncio.gather(*polls, return_exceptions=True)
        rss = await _stable_rss(ctx)
        after.append(rss)
        rec.figure(f"rss_after_cycle_{cycle}_mib", mib(rss), "MiB", "lower")
