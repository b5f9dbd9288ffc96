"""Fixtures shared by the federation tests."""

from __future__ import annotations

import pytest

from tests.federation_ca import start_federating_server


@pytest.fixture
async def pair(make_server, ca):
    """Two servers of ours that admit each other."""
    hs1 = await start_federating_server(make_server, ca, "hs1.test.local", ["hs2.test.local"])
    hs2 = await start_federating_server(make_server, ca, "hs2.test.local", ["hs1.test.local"])
    return hs1, hs2
