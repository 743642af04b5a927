"""Two ``ipymeet serve --redis`` processes on one real Redis, a Chromium tab on each one's own
standalone page: they meet in one room with video both ways (server/cluster/redis.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ..integration.redis_nodes import Node, running_nodes, running_redis
from .conftest import wait_remote_video, wait_state

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Node]]:
    folder = tmp_path_factory.mktemp("redis-tabs")
    with (
        running_redis(folder / "redis") as redis_server,
        running_nodes(redis_server.url, folder) as nodes,
    ):
        yield nodes


def test_tabs_on_two_processes_meet_with_video_both_ways(
    nodes: list[Node], new_page: Callable[..., Any]
) -> None:
    """Each tab talks only to its own process (its page's origin); their signals cross through
    Redis, and the media flows tab to tab both ways. Hanging up on one is seen on the other."""
    one, two = nodes
    first = new_page(f"{one.url}/?room=redis-tabs&name=Ada")
    second = new_page(f"{two.url}/?room=redis-tabs&name=Bo")
    first.get_by_test_id("connect").click()
    wait_state(first, "waiting")
    second.get_by_test_id("connect").click()
    wait_remote_video(first)
    wait_remote_video(second)
    wait_state(first, "in_call")
    wait_state(second, "in_call")
    tile_shows = (
        "(n) => document.querySelector('.ipymeet-tile[data-peer-id]')?.textContent.includes(n)"
    )
    first.wait_for_function(tile_shows, arg="Bo")
    second.wait_for_function(tile_shows, arg="Ada")
    second.get_by_test_id("connect").click()  # now "Hang up"
    wait_state(second, "left")
    wait_state(first, "waiting")
    first.wait_for_function("() => !document.querySelector('[data-testid=remote-video]')")
