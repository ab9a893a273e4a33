"""Fixtures of the security tests: the daemon workspace of the end-to-end tests."""

from tests.e2e.conftest import workspace

__all__ = ["workspace"]
