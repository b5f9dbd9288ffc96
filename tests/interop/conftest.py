"""Interop tests against Synapse: one Synapse for the whole session (tests/synapse_peer.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
import pytest_asyncio
from nio import AsyncClient, JoinResponse

from interop.synapse import SynapseUnavailable
from tests.interop.helpers import public_room, sync_until
from tests.synapse_peer import SynapsePeer, start_our_server, start_synapse

_timings: dict[str, float] = {}
_peer: list[SynapsePeer] = []  # the session's Synapse once started, for failure reports


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def synapse_peer(pg_admin_dsn, tmp_path_factory):
    try:
        peer = await start_synapse(pg_admin_dsn, tmp_path_factory.mktemp("synapse-interop"))
    except SynapseUnavailable as e:
        # The only reason to skip: no Synapse on this machine and no PyPI to install it from.
        pytest.skip(f"Synapse unavailable: {e}")
    _timings.update(peer.timings, version=peer.version)
    _peer.append(peer)
    yield peer
    _peer.clear()
    await peer.close()


@pytest_asyncio.fixture(loop_scope="session")
async def ours(make_server, synapse_peer: SynapsePeer):
    """A federating server of ours (localhost:PORT) that admits the session's Synapse."""
    return await start_our_server(make_server, synapse_peer)


def pytest_terminal_summary(terminalreporter):
    if _timings:
        terminalreporter.write_line(
            f"Synapse {_timings['version']}: install/check {_timings['install_s']:.1f} s, "
            f"start {_timings['start_s']:.1f} s"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing interop test's report carries the end of Synapse's log: Synapse's side
    of a federation failure is usually only there."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and _peer:
        report.sections.append(("Synapse log (last lines)", _peer[0].log_tail()))


@dataclass
class SharedRoom:
    """A public room created by `host` on its server and joined by `guest` from the other
    server. alice is always our user, bob always Synapse's."""

    room_id: str
    alias: str
    host: AsyncClient
    guest: AsyncClient
    alice: AsyncClient
    bob: AsyncClient


@pytest_asyncio.fixture(params=["created on ours", "created on synapse"], loop_scope="session")
async def shared_room(request, ours, synapse_peer):
    alice = await ours.client(f"alice{uuid.uuid4().hex[:6]}")
    bob = await synapse_peer.client()
    host, guest = (alice, bob) if request.param == "created on ours" else (bob, alice)
    try:
        room_id, alias = await public_room(host, "shared")
        joined = await guest.join(alias)
        assert isinstance(joined, JoinResponse), joined
        await sync_until(host, lambda _: guest.user_id in host.rooms[room_id].users, "the join")
        await guest.sync(timeout=0)
        yield SharedRoom(room_id, alias, host, guest, alice, bob)
    finally:
        await bob.close()
