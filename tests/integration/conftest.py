"""Fixtures shared by the integration tests of every area (the server fixtures themselves,
`server` and `make_server` on a fresh database each, are in tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.federation_ca import TestCA


@pytest.fixture
def ca(tmp_path):
    """A test certificate authority for servers that federate over TLS on loopback."""
    return TestCA(tmp_path / "ca")
