"""Fixtures the attacks share with the integration tests."""

from ..integration.redis_nodes import redis_server, two_nodes  # noqa: F401
