"""The scenarios, in the order they run (later ones reuse users and rooms of earlier ones)."""

from __future__ import annotations

import asyncio
import contextlib
import time

from bench.client import MatrixHTTPError
from bench.memory import PeakSampler, mib
from bench.profile import tables
from bench.scenarios.accounts import registration, user_pool
from bench.scenarios.base import Context, Recorder, ScenarioError
from bench.scenarios.requests import whoami
from bench.scenarios.rooms import big_room_join, room_creation
from bench.scenarios.search import search
from bench.scenarios.sending import messages_pagination, send_many_rooms, send_one_room
from bench.scenarios.sliding import sliding_sync
from bench.scenarios.syncing import (
    delivery_latency,
    idle_longpolls,
    initial_sync,
    longpoll_cycles,
)
from bench.scenarios.threads import thread_page

SCENARIOS = {
    "registration": registration,
    "user_pool": user_pool,
    "whoami": whoami,
    "room_creation": room_creation,
    "send_one_room": send_one_room,
    "send_many_rooms": send_many_rooms,
    "messages_pagination": messages_pagination,
    "delivery_latency": delivery_latency,
    "initial_sync": initial_sync,
    "big_room_join": big_room_join,
    "idle_longpolls": idle_longpolls,
    "sliding_sync": sliding_sync,
    "longpoll_cycles": longpoll_cycles,
    "thread_page": thread_page,
    "search": search,
}


async def run_scenario(name: str, ctx: Context) -> dict:
    """Runs one scenario under its time cap; always returns a result, never raises.

    The result holds the figures gathered so far, the server's resident memory
    at the end and its peak during the scenario, why it stopped early if it did, and,
    when the context has a profile directory, each measured phase's py-spy profile
    (its path and its top functions: bench.profile.tables).
    """
    rec = Recorder()
    cap = ctx.sizes.caps_s[name]
    status = "ok"
    setup_before = ctx.setup_seconds
    began = time.perf_counter()
    pid = ctx.target.pid
    ctx.scenario, ctx.profiles = name, {}
    with PeakSampler(pid) if pid else contextlib.nullcontext() as sampler:
        try:
            async with asyncio.timeout(cap):
                await SCENARIOS[name](ctx, rec)
        except TimeoutError:
            status = f"stopped at its {cap} s time cap"
        except (ScenarioError, MatrixHTTPError) as e:
            status = f"failed: {e}"
        except Exception as e:  # a server that breaks must not stop the other's run
            status = f"failed: {type(e).__name__}: {e}"
    rss_end = ctx.target.rss()
    peak = max(sampler.peak, rss_end or 0) if sampler else None
    result = {
        "status": status,
        "seconds": round(time.perf_counter() - began, 3),
        "setup_seconds": round(ctx.setup_seconds - setup_before, 3),
        "figures": rec.figures,
        "notes": rec.notes,
        "rss_end_mib": mib(rss_end),
        "rss_peak_mib": mib(peak),
    }
    if ctx.profiles:
        result["profiles"] = {
            phase: {"path": str(path), **tables(path)} for phase, path in ctx.profiles.items()
        }
    return result
