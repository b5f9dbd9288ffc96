"""Server-side search (POST /search) over a large history: 100,000 [2,000] messages in 10
[2] rooms of one member, then the latency of a search for a common word (in about one
message in five), a rare one (in 20 messages) and one that no message holds, each in
rank and in recent order.

Filling is bounded by its own deadline (search_fill_s) inside the scenario's cap, so
the searches always run: a fill cut short says how many messages it stored."""

from __future__ import annotations

import asyncio
import random
import time

from bench.client import PREFIX
from bench.scenarios.base import Context, Recorder, ms
from bench.stats import rate, summarize

COMMON = "report"
RARE = "zanzibar"
ABSENT = "xylophonist"
# Filler: plain words, none of which is a stem or prefix of the three above.
_FILLER = (
    "the a meeting budget draft team plan today tomorrow lunch call notes agenda minutes "
    "office travel update review deadline project client server room minister agency "
    "policy letter summary figures please thanks done next week monday friday morning "
    "evening question answer decision vote approve reject send read write check"
).split()
RARE_COUNT = 20  # messages holding the rare word, whatever the size


def _text(rng: random.Random, i: int, rare_every: int) -> str:
    words = [rng.choice(_FILLER) for _ in range(rng.randint(6, 16))]
    if rng.random() < 0.2:
        words.insert(rng.randrange(len(words)), COMMON)
    if i % rare_every == rare_every // 2:
        words.insert(rng.randrange(len(words)), RARE)
    return " ".join(words)


async def _fill(ctx: Context, rec: Recorder, rooms: list[str]) -> int:
    sizes = ctx.sizes
    owner = ctx.users[1]
    total = sizes.search_messages
    deadline = time.perf_counter() + sizes.search_fill_s
    rng = random.Random(12)
    rare_every = max(1, total // RARE_COUNT)
    texts = [_text(rng, i, rare_every) for i in range(total)]
    counter = iter(range(total))
    sent = 0

    async def worker() -> None:
        nonlocal sent
        for i in counter:
            if time.perf_counter() > deadline:
                return
            await owner.send_text(rooms[i % len(rooms)], texts[i])
            sent += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(sizes.search_concurrency)))
    rec.figure("search_fill_msgs_per_s", rate(sent, time.perf_counter() - began), "msg/s", "higher")
    if sent < total:
        rec.note(f"fill stopped at its {sizes.search_fill_s} s deadline: {sent} of {total}")
    return sent


async def search(ctx: Context, rec: Recorder) -> None:
    sizes = ctx.sizes
    await ctx.ensure_users(2)
    owner = ctx.users[1]
    rooms = [
        await owner.create_room(name=f"search {i}", public=False) for i in range(sizes.search_rooms)
    ]
    async with ctx.measured("fill"):
        sent = await _fill(ctx, rec, rooms)
    rec.note(f"{sent} messages in {len(rooms)} rooms")
    async with ctx.measured("queries"):
        for word in (COMMON, RARE, ABSENT):
            for order in ("rank", "recent"):
                body = {
                    "search_categories": {
                        "room_events": {
                            "search_term": word,
                            "order_by": order,
                            "filter": {"limit": 10},
                        }
                    }
                }
                durations = []
                resp = None
                for _ in range(sizes.search_repeats):
                    resp = await owner.call("POST", f"{PREFIX}/search", body=body)
                    durations.append(resp.seconds)
                summary = summarize(durations)
                rec.figure(f"search_{word}_{order}_p50_ms", ms(summary["p50"]), "ms", "lower")
                rec.figure(f"search_{word}_{order}_p95_ms", ms(summary["p95"]), "ms", "lower")
                assert resp is not None
                found = resp.body.get("search_categories", {}).get("room_events", {})
                if order == "rank":
                    rec.note(
                        f"{word!r}: count {found.get('count')}, page of {len(found.get('results', []))}"
                    )
