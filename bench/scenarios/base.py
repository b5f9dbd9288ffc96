"""What every scenario shares: sizes, the per-server context and the figure recorder."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

from bench.client import User, register
from bench.memory import tree_rss
from bench.profile import profiled

PASSWORD = "bench-password-not-secret"


@dataclass(frozen=True)
class Sizes:
    """Counts for every scenario. Each scenario is also capped in time (caps_s)."""

    register_users: int = 200
    register_concurrency: int = 8
    setup_concurrency: int = 16
    created_rooms: int = 200  # also the number of rooms the initial-sync user is in
    create_concurrency: int = 8
    one_room_senders: int = 50
    one_room_messages: int = 2000
    many_rooms: int = 100
    many_rooms_messages: int = 2000
    pagination_pages: int = 300
    pagination_readers: int = 4
    page_size: int = 20
    latency_receivers: int = 100
    latency_messages: int = 20
    initial_syncs: int = 3
    incremental_syncs: int = 20
    big_room_members: int = 1000
    big_room_joiners: int = 10
    idle_longpolls: int = 1000
    # longpoll_cycles: this many long-polls, spread over these users, opened then
    # abandoned (connections closed), this many times.
    cycle_longpolls: int = 1000
    cycle_users: int = 20
    cycles: int = 5
    delivery_timeout_s: float = 15.0
    fanout_timeout_s: float = 60.0  # one message to every idle long-poll at once
    sliding_rooms: int = 500  # rooms of the sliding-sync user (its own, created as setup)
    sliding_first_responses: int = 3
    sliding_incrementals: int = 20
    thread_messages: int = 500
    thread_senders: int = 5
    other_threads: int = 20
    thread_page_size: int = 50
    thread_repeats: int = 50
    search_messages: int = 100_000
    search_rooms: int = 10
    search_concurrency: int = 32
    search_fill_s: float = 240.0  # the fill stops here, so the searches still run
    search_repeats: int = 20
    # whoami (and the bare aiohttp handler of bench/limits.py, under the same load):
    # this many clients, each one request after the other, for this long.
    whoami_concurrency: int = 16
    whoami_seconds: float = 15.0
    # pgbench -N (bench/limits.py): this many clients for this long.
    pgbench_clients: int = 20
    pgbench_seconds: float = 15.0
    caps_s: dict = field(
        default_factory=lambda: {
            "registration": 300,
            "user_pool": 1500,
            "whoami": 60,
            "room_creation": 120,
            "send_one_room": 120,
            "send_many_rooms": 120,
            "messages_pagination": 60,
            "delivery_latency": 120,
            "initial_sync": 120,
            "big_room_join": 480,
            "idle_longpolls": 300,
            "sliding_sync": 900,
            "longpoll_cycles": 600,
            "thread_page": 180,
            "search": 300,
        }
    )

    @property
    def pool_size(self) -> int:
        # user 0: the initial-sync user; user 1: room creator and sender; then the crowd.
        crowd = max(
            self.one_room_senders,
            self.many_rooms,
            self.latency_receivers,
            self.big_room_members + self.big_room_joiners,
        )
        return 2 + crowd


DEFAULT = Sizes()
QUICK = dataclasses.replace(
    DEFAULT,
    register_users=10,
    created_rooms=20,
    one_room_senders=5,
    one_room_messages=60,
    many_rooms=10,
    many_rooms_messages=60,
    pagination_pages=20,
    pagination_readers=2,
    latency_receivers=10,
    latency_messages=3,
    initial_syncs=2,
    incremental_syncs=5,
    big_room_members=20,
    big_room_joiners=2,
    idle_longpolls=20,
    cycle_longpolls=40,
    cycle_users=4,
    delivery_timeout_s=10.0,
    fanout_timeout_s=20.0,
    sliding_rooms=20,
    sliding_first_responses=2,
    sliding_incrementals=5,
    thread_messages=50,
    other_threads=3,
    thread_page_size=10,
    thread_repeats=10,
    search_messages=2000,
    search_rooms=2,
    search_fill_s=60.0,
    search_repeats=5,
    whoami_seconds=3.0,
    pgbench_seconds=5.0,
    caps_s={k: min(v, 90) for k, v in DEFAULT.caps_s.items()},
)

# Lazy-loaded members and a short timeline, as Element and other real clients ask for:
# without it a member of a 1,000-member room downloads every member event each sync.
SYNC_FILTER = orjson.dumps(
    {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 10}}}
).decode()
# Idle long-polls must stay idle: presence and account data would wake them.
IDLE_FILTER = orjson.dumps(
    {
        "room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 10}},
        "presence": {"types": []},
        "account_data": {"types": []},
    }
).decode()


@dataclass
class Target:
    """One homeserver under test: its name, URL, and the pid whose memory we read."""

    name: str
    base_url: str
    pid: int | None = None

    def rss(self) -> int | None:
        return tree_rss(self.pid) if self.pid else None


class ScenarioError(Exception):
    """A scenario cannot run on this server (a missing endpoint, a missing prerequisite)."""


class Recorder:
    """Collects one scenario's figures; kept even when the scenario is cut short."""

    def __init__(self) -> None:
        self.figures: dict[str, dict] = {}
        self.notes: list[str] = []

    def figure(self, name: str, value: float | None, unit: str, better: str) -> None:
        assert better in ("higher", "lower")
        self.figures[name] = {"value": value, "unit": unit, "better": better}

    def note(self, text: str) -> None:
        self.notes.append(text)


class Context:
    """Per-server state carried from one scenario to the next (users, rooms)."""

    def __init__(
        self,
        target: Target,
        sizes: Sizes,
        session: aiohttp.ClientSession,
        profile_dir: Path | None = None,
    ):
        self.target = target
        self.sizes = sizes
        self.session = session
        # With a directory, py-spy samples the server during each measured phase.
        self.profile_dir = profile_dir
        self.scenario = ""  # the one running (run_scenario sets it)
        self.profiles: dict[str, Path] = {}  # phase -> collapsed stacks, of this scenario
        self.users: list[User] = []
        self.state: dict = {}
        self.setup_seconds = 0.0
        # Localparts are never reused: a registration cut short by a time cap may still
        # have completed on the server.
        self._next_localpart = 0

    async def register_users(
        self, count: int, concurrency: int, durations: list[float] | None = None
    ) -> list[float]:
        """Registers `count` more users into the pool; returns each request's seconds
        (appended to `durations` as they complete, so a cut-short caller still has them)."""
        new: list[User | None] = [None] * count
        durations = [] if durations is None else durations

        async def one(i: int) -> None:
            localpart = f"bench{self._next_localpart}"
            self._next_localpart += 1
            began = time.perf_counter()
            new[i] = await register(self.session, self.target.base_url, localpart, PASSWORD)
            durations.append(time.perf_counter() - began)

        try:
            await run_pool(count, concurrency, one)
        finally:
            # Keep whoever did register, in order, so a cut-short run can still go on.
            self.users.extend(u for u in new if u is not None)
        return durations

    async def ensure_users(self, count: int) -> list[User]:
        """The first `count` pool users, registering the missing ones (timed as setup)."""
        missing = count - len(self.users)
        if missing > 0:
            began = time.perf_counter()
            await self.register_users(missing, self.sizes.setup_concurrency)
            self.setup_seconds += time.perf_counter() - began
        return self.users[:count]

    @contextlib.asynccontextmanager
    async def measured(self, phase: str) -> AsyncIterator[None]:
        """Marks a scenario's measured phase (not its setup): with a profile directory,
        py-spy samples the server while it runs, into <dir>/<scenario>-<phase>.txt."""
        if self.profile_dir is None:
            yield
            return
        out = self.profile_dir / f"{self.scenario}-{phase}.txt"
        recorder = profiled(self.target.pid, out)
        taken = recorder.__enter__()
        if taken is not None:
            await asyncio.sleep(0.5)  # py-spy attached before the phase (and its clock) starts
        try:
            yield
        finally:
            # Stopping waits for py-spy to write its file: not on the event loop.
            await asyncio.to_thread(recorder.__exit__, None, None, None)
            if taken is not None:
                self.profiles[phase] = taken

    def require(self, key: str, scenario: str):
        if not self.state.get(key):
            raise ScenarioError(f"needs the {scenario} scenario to have run on this server")
        return self.state[key]


async def run_pool(count: int, concurrency: int, job: Callable[[int], Awaitable[None]]) -> None:
    """Runs job(0..count-1) with at most `concurrency` in flight; the first error aborts."""
    indices = iter(range(count))

    async def worker() -> None:
        for i in indices:
            await job(i)

    workers = [asyncio.ensure_future(worker()) for _ in range(max(1, min(concurrency, count)))]
    try:
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


async def join_all(users: list[User], room_id: str, concurrency: int) -> list[float]:
    """Joins every user to the room; returns each join's seconds."""
    durations: list[float] = []

    async def one(i: int) -> None:
        durations.append((await users[i].join(room_id)).seconds)

    await run_pool(len(users), concurrency, one)
    return durations


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000
