"""A 500-message thread: GET /relations pages over it, GET /threads, and the root event
with its bundled m.thread aggregation."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from bench.client import PREFIX, Response, room_path
from bench.scenarios.base import Context, Recorder, join_all, ms, run_pool
from bench.stats import rate, summarize

V1 = PREFIX.replace("/v3", "/v1")


async def _timed(
    rec: Recorder, name: str, repeats: int, call: Callable[[], Awaitable[Response]]
) -> Response:
    durations = []
    resp = None
    for _ in range(repeats):
        resp = await call()
        durations.append(resp.seconds)
    summary = summarize(durations)
    rec.figure(f"{name}_p50_ms", ms(summary["p50"]), "ms", "lower")
    rec.figure(f"{name}_p95_ms", ms(summary["p95"]), "ms", "lower")
    assert resp is not None
    return resp


async def thread_page(ctx: Context, rec: Recorder) -> None:
    sizes = ctx.sizes
    users = await ctx.ensure_users(2 + sizes.thread_senders)
    owner, senders = users[1], users[2 : 2 + sizes.thread_senders]
    room_id = await owner.create_room(name="thread room")
    await join_all(senders, room_id, sizes.setup_concurrency)
    root = (await owner.send_text(room_id, "thread root")).body["event_id"]
    # Other threads in the room, so /threads has a list to order.
    for i in range(sizes.other_threads):
        other = (await owner.send_text(room_id, f"other root {i}")).body["event_id"]
        await senders[i % len(senders)].send_text(
            room_id, "reply", **{"m.relates_to": {"rel_type": "m.thread", "event_id": other}}
        )
    per_sender = sizes.thread_messages // len(senders)
    relation = {"m.relates_to": {"rel_type": "m.thread", "event_id": root}}

    async def fill(i: int) -> None:
        for k in range(per_sender):
            await senders[i].send_text(room_id, f"in thread {k}", **relation)

    async with ctx.measured("thread_send"):
        began = time.perf_counter()
        await run_pool(len(senders), len(senders), fill)
        elapsed = time.perf_counter() - began
    total = per_sender * len(senders)
    rec.figure("thread_send_msgs_per_s", rate(total, elapsed), "msg/s", "higher")
    rec.note(
        f"{total} thread messages from {len(senders)} senders; {sizes.other_threads} other threads"
    )

    async with ctx.measured("reads"):
        reader = senders[0]
        rel_path = f"{V1}{room_path(room_id, 'relations', root, 'm.thread')[len(PREFIX) :]}"
        page = sizes.thread_page_size
        await _timed(
            rec,
            "relations_first_page",
            sizes.thread_repeats,
            lambda: reader.call("GET", rel_path, params={"limit": str(page)}),
        )
        whole = await _timed(
            rec,
            "relations_whole_thread",
            max(1, sizes.thread_repeats // 5),
            lambda: reader.call("GET", rel_path, params={"limit": str(total)}),
        )
        if len(whole.body.get("chunk", [])) != total:
            rec.note(f"the whole-thread page held {len(whole.body.get('chunk', []))} events")

        # Walking the whole thread backwards page by page, as a client scrolling up does.
        walks = []
        for _ in range(max(1, sizes.thread_repeats // 10)):
            token, seen, began = None, 0, time.perf_counter()
            while True:
                params = {"limit": str(page)}
                if token:
                    params["from"] = token
                body = (await reader.call("GET", rel_path, params=params)).body
                seen += len(body.get("chunk", []))
                token = body.get("next_batch")
                if not token:
                    break
            walks.append(time.perf_counter() - began)
        rec.figure("relations_walk_ms", ms(summarize(walks)["p50"]), "ms", "lower")
        if seen != total:
            rec.note(f"walking the thread saw {seen} events")

        threads_path = f"{V1}{room_path(room_id, 'threads')[len(PREFIX) :]}"
        await _timed(
            rec,
            "threads_page",
            sizes.thread_repeats,
            lambda: reader.call("GET", threads_path, params={"limit": "20"}),
        )
        root_path = room_path(room_id, "event", root)
        ev = await _timed(
            rec, "root_event", sizes.thread_repeats, lambda: reader.call("GET", root_path)
        )
    count = ev.body.get("unsigned", {}).get("m.relations", {}).get("m.thread", {}).get("count")
    rec.note(f"root's bundled m.thread count: {count}")
