"""The signaller's standalone page and the tutorial's own page, in real Chromium, one server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ipymeet.server import Settings, SignallerThread
from ipymeet.server.core.registry import tutorial_key

from .conftest import pump_until, wait_remote_video, wait_state
from .tutorial import write_tutorial_page

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignallerThread]:
    """One signaller for both pages: ipymeet's at ``/`` and the tutorial's at ``/public/``."""
    public = write_tutorial_page(tmp_path_factory.mktemp("tutorial"))
    # Rooms of two, so the third tab finds the room full.
    signaller = SignallerThread(Settings(ice_servers=(), public_dir=public, max_peers=2)).start()
    yield signaller
    signaller.stop()


def state_of(page: Any) -> Any:
    return page.evaluate("() => window.ipymeet.model.get('state')")


def test_two_tabs_see_each_other_and_a_third_is_told_the_room_is_full(
    server: SignallerThread, new_page: Callable[..., Any]
) -> None:
    """Two standalone tabs in one room both show the other's moving video; a third gets a plain
    'room full' message, and the call of the first two is untouched."""
    url = f"{server.url}/?room=standalone-1"
    first, second = new_page(url), new_page(url)
    first.get_by_test_id("connect").click()
    wait_state(first, "waiting")
    second.get_by_test_id("connect").click()
    wait_remote_video(first)
    wait_remote_video(second)
    wait_state(first, "in_call")
    wait_state(second, "in_call")

    third = new_page(url)
    third.get_by_test_id("connect").click()
    wait_state(third, "failed")
    error = third.get_by_test_id("error")
    assert "full" in error.inner_text().lower()
    assert third.evaluate("() => window.ipymeet.model.get('error_code')") == "room_full"
    assert third.locator("[data-testid=remote-video]").count() == 0
    members = server.registry.members("standalone-1")
    assert len(members) == 2
    wait_remote_video(first)  # still flowing


def test_hang_up_tells_the_other_at_once(
    server: SignallerThread, new_page: Callable[..., Any]
) -> None:
    """Hang up leaves the room: the other tab drops the tile and goes back to waiting."""
    url = f"{server.url}/?room=standalone-2&autojoin=1"
    first, second = new_page(url), new_page(url)
    wait_remote_video(first)
    wait_remote_video(second)
    second.get_by_test_id("connect").click()  # now "Hang up"
    wait_state(second, "left")
    wait_state(first, "waiting")
    first.wait_for_function("() => !document.querySelector('[data-testid=remote-video]')")
    assert second.evaluate("() => window.ipymeet.model.get('_browser_peers').length") == 0
    assert server.registry.members("standalone-2")[0].sid != ""
    assert len(server.registry.members("standalone-2")) == 1


def _tutorial_page(new_page: Callable[..., Any], url: str, room: str) -> tuple[Any, list[str]]:
    page = new_page(url)
    alerts: list[str] = []

    def on_dialog(dialog: Any) -> None:
        alerts.append(dialog.message)
        dialog.accept()

    page.on("dialog", on_dialog)
    page.fill("#room-input", room)
    page.click("#connect-button")
    return page, alerts


def test_the_tutorials_own_page_works_unchanged(
    server: SignallerThread, new_page: Callable[..., Any]
) -> None:
    """The article's page, served as is: two readers see each other, a third is told it's full."""
    url = f"{server.url}/public/index.html"
    first, _ = _tutorial_page(new_page, url, "tutorial-1")
    first.wait_for_function("() => document.getElementById('local-video').srcObject !== null")
    second, _ = _tutorial_page(new_page, url, "tutorial-1")
    for page in (first, second):
        page.wait_for_function(
            "() => { const v = document.getElementById('remote-video');"
            " return v.videoWidth > 0 && v.readyState >= 2; }",
            timeout=30_000,
        )
    frames = first.evaluate(
        "() => document.getElementById('remote-video').getVideoPlaybackQuality().totalVideoFrames"
    )
    first.wait_for_function(
        "(n) => document.getElementById('remote-video')"
        ".getVideoPlaybackQuality().totalVideoFrames > n + 5",
        arg=frames,
    )
    third, alerts = _tutorial_page(new_page, url, "tutorial-1")
    pump_until(third, lambda: bool(alerts))
    assert alerts == ["The room is full, please try another one"]
    assert len(server.registry.members(tutorial_key("tutorial-1"))) == 2


def test_a_name_typed_in_the_page_is_what_the_others_see(
    server: SignallerThread, new_page: Callable[..., Any]
) -> None:
    """The name field goes with Connect; it is locked during the call."""
    url = f"{server.url}/?room=standalone-names"
    first, second = new_page(url), new_page(url + "&name=Grace")
    assert second.get_by_test_id("name-input").input_value() == "Grace"
    first.get_by_test_id("name-input").fill("Ada Lovelace")
    first.get_by_test_id("name-input").press("Enter")  # Enter connects, as in the room field
    wait_state(first, "waiting")
    assert first.get_by_test_id("name-input").is_disabled()
    second.get_by_test_id("connect").click()
    wait_state(second, "in_call")
    tile_shows = (
        "(n) => document.querySelector('.ipymeet-tile[data-peer-id]')?.textContent.includes(n)"
    )
    second.wait_for_function(tile_shows, arg="Ada Lovelace")
    first.wait_for_function(tile_shows, arg="Grace")
