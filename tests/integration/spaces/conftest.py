"""The federation tests' `pair` of servers, for the hierarchy across servers."""

from tests.integration.federation.conftest import pair

__all__ = ["pair"]
