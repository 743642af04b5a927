"""Fixtures for the integration tests (the signaller fixtures are in tests/conftest.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

# Real Redis servers and `ipymeet serve --redis` processes (tests/security uses them too).
from .redis_nodes import redis_server, two_nodes  # noqa: F401

#: The server's side only: the clients' engine.io logs an error when a test closes them.
SERVER_LOGGERS = (
    "ipymeet",
    "socketio.server",
    "engineio.server",
    "aiohttp.server",
    "aiohttp.web",
    "aiohttp.websocket",
    "asyncio",
)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def server_logs() -> Iterator[list[logging.LogRecord]]:
    """Warnings and errors of the server's stack: a handler that raised, a task that failed,
    a connection closed for what it sent."""
    handler = _Records()
    for name in SERVER_LOGGERS:
        logging.getLogger(name).addHandler(handler)
    yield handler.records
    for name in SERVER_LOGGERS:
        logging.getLogger(name).removeHandler(handler)
