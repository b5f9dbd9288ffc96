"""Fixtures shared by the federation tests."""

from __future__ import annotations

import pytest

from tests.federation_ca import FEDERATED_PRESENCE, start_federating_server


@pytest.fixture
async def pair(make_server, ca):
    """Two servers of ours that admit each other (and federate presence)."""
    hs1 = await start_federating_server(
        make_server, ca, "hs1.test.local", ["hs2.test.local"], config=FEDERATED_PRESENCE
    )
    hs2 = await start_federating_server(
        make_server, ca, "hs2.test.local", ["hs1.test.local"], config=FEDERATED_PRESENCE
    )
    return hs1, hs2
