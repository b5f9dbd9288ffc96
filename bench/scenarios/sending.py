"""Message send throughput (one busy room; many rooms) and /messages pagination."""

from __future__ import annotations

import time

from bench.client import User
from bench.scenarios.base import Context, Recorder, join_all, ms, run_pool
from bench.stats import rate, summarize


async def _send_spread(
    senders: list[User], rooms: list[str], total: int, rec: Recorder, prefix: str
) -> None:
    """Each sender i sends total/len(senders) messages into rooms[i % len(rooms)],
    all senders at once, each one message after the other (as a client does)."""
    per_sender = max(1, total // len(senders))
    durations: list[float] = []

    async def one(i: int) -> None:
        room = rooms[i % len(rooms)]
        for k in range(per_sender):
            durations.append((await senders[i].send_text(room, f"bench message {k}")).seconds)

    began = time.perf_counter()
    try:
        await run_pool(len(senders), len(senders), one)
    finally:
        elapsed = time.perf_counter() - began
        rec.figure(f"{prefix}_msgs_per_s", rate(len(durations), elapsed), "msg/s", "higher")
        rec.figure(f"{prefix}_send_p50_ms", ms(summarize(durations)["p50"]), "ms", "lower")
        rec.figure(f"{prefix}_send_p99_ms", ms(summarize(durations)["p99"]), "ms", "lower")
        rec.note(f"{len(durations)} messages from {len(senders)} concurrent senders")


async def send_one_room(ctx: Context, rec: Recorder) -> None:
    sizes = ctx.sizes
    users = await ctx.ensure_users(2 + sizes.one_room_senders)
    senders = users[2 : 2 + sizes.one_room_senders]
    room_id = await users[1].create_room(name="busy room")
    await join_all(senders, room_id, sizes.setup_concurrency)
    ctx.state["busy_room"] = room_id
    async with ctx.measured("send"):
        await _send_spread(senders, [room_id], sizes.one_room_messages, rec, "one_room")


async def send_many_rooms(ctx: Context, rec: Recorder) -> None:
    """One sender per room, across the first many_rooms rooms user 0 created."""
    sizes = ctx.sizes
    rooms = ctx.require("created_rooms", "room_creation")[: sizes.many_rooms]
    users = await ctx.ensure_users(2 + len(rooms))
    senders = users[2 : 2 + len(rooms)]

    async def join_own(i: int) -> None:
        await senders[i].join(rooms[i])

    await run_pool(len(rooms), sizes.setup_concurrency, join_own)
    async with ctx.measured("send"):
        await _send_spread(senders, rooms, sizes.many_rooms_messages, rec, "many_rooms")


async def messages_pagination(ctx: Context, rec: Recorder) -> None:
    """Readers page backwards through the busy room from its newest event."""
    sizes = ctx.sizes
    room_id = ctx.require("busy_room", "send_one_room")
    readers = (await ctx.ensure_users(2 + sizes.pagination_readers))[2:]
    budget = [sizes.pagination_pages]
    durations: list[float] = []
    events = [0]

    async def read(i: int) -> None:
        token = None  # no `from`: the spec (v1.3+) starts at the newest event
        while budget[0] > 0:
            budget[0] -= 1
            resp = await readers[i].messages(room_id, start=token, limit=sizes.page_size)
            durations.append(resp.seconds)
            chunk = resp.body.get("chunk", [])
            events[0] += len(chunk)
            token = resp.body.get("end")
            if not chunk or not token:
                token = None  # reached the room's start: begin again from the newest

    async with ctx.measured("paginate"):
        began = time.perf_counter()
        try:
            await run_pool(len(readers), len(readers), read)
        finally:
            elapsed = time.perf_counter() - began
            rec.figure("pages_per_s", rate(len(durations), elapsed), "pages/s", "higher")
            rec.figure("paginated_events_per_s", rate(events[0], elapsed), "events/s", "higher")
            rec.figure("page_p50_ms", ms(summarize(durations)["p50"]), "ms", "lower")
