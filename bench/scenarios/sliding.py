"""Simplified sliding sync (MSC4186), as Element X drives it: a user in 500 rooms opens a
room-list connection (first response), grows the list to every room, then receives one
new message at a time (incremental response) and polls with nothing new (floor cost)."""

from __future__ import annotations

import time

from bench.client import register
from bench.scenarios.base import PASSWORD, Context, Recorder, ScenarioError, ms, run_pool
from bench.stats import summarize

PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
# Element X's room-list request (matrix-rust-sdk's room list service), trimmed to the
# parts both servers serve.
REQUIRED_STATE = [
    ["m.room.name", ""],
    ["m.room.avatar", ""],
    ["m.room.encryption", ""],
    ["m.room.topic", ""],
    ["m.room.canonical_alias", ""],
    ["m.room.power_levels", ""],
    ["m.room.join_rules", ""],
    ["m.room.create", ""],
    ["m.room.member", "$LAZY"],
    ["m.room.member", "$ME"],
]
EXTENSIONS = {
    "account_data": {"enabled": True},
    "receipts": {"enabled": True, "rooms": ["*"], "lists": ["*"]},
    "typing": {"enabled": True},
}


def _body(end: int) -> dict:
    return {
        "conn_id": "room-list",
        "lists": {
            "all_rooms": {
                "ranges": [[0, end]],
                "timeline_limit": 1,
                "required_state": REQUIRED_STATE,
                "filters": {"not_room_types": ["m.space"]},
            }
        },
        "extensions": EXTENSIONS,
    }


async def sliding_sync(ctx: Context, rec: Recorder) -> None:
    sizes = ctx.sizes
    n = sizes.sliding_rooms
    began = time.perf_counter()
    user = await register(ctx.session, ctx.target.base_url, f"slider{time.time_ns()}", PASSWORD)
    rooms: list[str] = []

    async def create(i: int) -> None:
        rooms.append(await user.create_room(name=f"sliding room {i}", public=False))

    await run_pool(n, sizes.create_concurrency, create)
    ctx.setup_seconds += time.perf_counter() - began

    async def call(body: dict, pos: str | None = None):
        params = {"timeout": "0"}
        if pos is not None:
            params["pos"] = pos
        resp = await user.call("POST", PATH, body=body, params=params)
        if not isinstance(resp.body, dict) or "pos" not in resp.body:
            raise ScenarioError(f"no pos in the response: {str(resp.body)[:200]}")
        return resp

    async with ctx.measured("first_and_grow"):
        firsts, first_bytes, grows = [], [], []
        pos = None
        for _ in range(sizes.sliding_first_responses):
            first = await call(_body(19))  # no pos: a new connection each time
            if first.body["lists"]["all_rooms"]["count"] != n:
                raise ScenarioError(
                    f"list count {first.body['lists']['all_rooms']['count']} != {n}"
                )
            firsts.append(first.seconds)
            first_bytes.append(first.nbytes)
            grown = await call(_body(n - 1), first.body["pos"])
            grows.append(grown.seconds)
            pos = grown.body["pos"]
    rec.figure("first_response_ms", ms(summarize(firsts)["p50"]), "ms", "lower")
    rec.figure("first_response_kib", summarize(first_bytes)["p50"] / 1024, "KiB", "lower")
    rec.figure("grow_to_all_rooms_ms", ms(summarize(grows)["p50"]), "ms", "lower")

    async with ctx.measured("incremental"):  # the sends are in it too
        inc, inc_bytes, empty = [], [], []
        for k in range(sizes.sliding_incrementals):
            room = rooms[(k * 7) % len(rooms)]
            await user.send_text(room, f"sliding {k}")
            resp = await call(_body(n - 1), pos)
            if room not in resp.body.get("rooms", {}):
                raise ScenarioError("the incremental response lacks the room just written to")
            inc.append(resp.seconds)
            inc_bytes.append(resp.nbytes)
            pos = resp.body["pos"]
            idle = await call(_body(n - 1), pos)
            empty.append(idle.seconds)
            pos = idle.body["pos"]
    rec.figure("incremental_response_ms", ms(summarize(inc)["p50"]), "ms", "lower")
    rec.figure("incremental_response_bytes", summarize(inc_bytes)["p50"], "B", "lower")
    rec.figure("empty_incremental_ms", ms(summarize(empty)["p50"]), "ms", "lower")
    rec.note(
        f"user in {n} rooms; list 0-19 then 0-{n - 1}; {len(firsts)} new connections,"
        f" {len(inc)} incremental responses after one message each"
    )
