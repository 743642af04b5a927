"""marimo apps share the signaller as Jupyter kernels do: two ``marimo run`` servers of
notebooks/marimo_room.py (two processes, on one runtime folder and signaller port of this test's
own) and a tab of the signaller's own page meet in one room, in real Chromium.

The first app's process hosts the signaller, the second's attaches: one process listens on the
shared port, and the second app's process listens on nothing but its own marimo port; a second
tab of the first app (another session of its process) adds no port either. That the
second app's page gets in at all shows the attachment at work: the host admits only the widget
keys registered with it, and the second app's key reaches it over the attach connection. When the
first server ends (SIGTERM, as a Ctrl-C does), the second hosts on the same port and the call goes
on.

The widget renders in marimo's shadow root (<marimo-anywidget>): Playwright's locators look into
it; page scripts are told where it is (``shadow=``).
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from ..support import Served, free_port, listeners, start_server, stop_server, wait_until
from .conftest import ARTIFACTS, wait_remote_video
from .remote import signaller_host
from .test_rooms_across_kernels import wait_videos

pytestmark = [pytest.mark.browser, pytest.mark.jupyter]

APP = Path(__file__).resolve().parents[2] / "notebooks" / "marimo_room.py"
#: The element marimo renders an anywidget in, with the widget in its open shadow root.
HOST = "marimo-anywidget"
#: Starting a marimo server and the first session's cells, on a loaded 2-core machine.
START_TIMEOUT = 90


def marimo_run(app: Path, port: int) -> list[str]:
    """``marimo run`` of ``app`` on 127.0.0.1:``port``: no browser opened, no token asked, no
    sandbox offered."""
    return [
        *(sys.executable, "-m", "marimo", "run", str(app)),
        *("--headless", "--no-token", "--no-sandbox"),
        *("--host", "127.0.0.1", "--port", str(port)),
    ]


@pytest.fixture
def marimo_apps(tmp_path: Path) -> Iterator[tuple[str, list[Served]]]:
    """Two ``marimo run`` servers of the app, on one room, runtime folder and signaller port of
    this test's own (so they share a signaller with each other and nothing else)."""
    room = f"marimo-{secrets.token_hex(4)}"
    env = {
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "IPYMEET_PORT": str(free_port()),
        "IPYMEET_MARIMO_ROOM": room,
    }
    servers: list[Served] = []
    try:
        for label in ("a", "b"):
            port = free_port()
            url = f"http://127.0.0.1:{port}/"
            where = {"url": url, "root": APP.parent, "log": tmp_path / f"marimo-{label}.log"}
            servers.append(
                start_server(marimo_run(APP, port), f"{url}health", where, START_TIMEOUT, env=env)
            )
        yield room, servers
    finally:
        for served in servers:
            stop_server(served)


def open_app(new_page: Callable[..., Any], served: Served, name: str) -> Any:
    """A tab of the app, once the widget shows (its session ran the cells), ``name`` typed in."""
    page = new_page(served.url, viewport={"width": 1100, "height": 900})
    page.get_by_test_id("connect").wait_for(timeout=START_TIMEOUT * 1000)
    page.get_by_test_id("name-input").fill(name)
    return page


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on."""
    return {
        c.laddr.port
        for c in psutil.Process(pid).net_connections("tcp")
        if c.status == psutil.CONN_LISTEN and c.laddr
    }


def app_port(served: Served) -> int:
    """The port ``marimo run`` serves the app on."""
    return int(served.url.rstrip("/").rsplit(":", 1)[1])


def tiles(page: Any) -> list[str]:
    """The names on the page's tiles of the others, sorted."""
    return sorted(page.locator(".ipymeet-tile-name-text").all_inner_texts())


def wait_tiles(page: Any, names: list[str], timeout: float = 30) -> None:
    """Wait until the page's tiles of the others are exactly ``names``' (any order)."""
    seen: list[list[str]] = [[]]

    def exactly() -> bool:
        seen[0] = tiles(page)
        return seen[0] == sorted(names)

    try:
        wait_until(exactly, timeout, f"the tiles {names}")
    except AssertionError as failed:
        raise AssertionError(f"{failed}; last seen: {seen[0]}") from None


def test_two_marimo_apps_and_a_tab_meet_in_one_room(
    marimo_apps: tuple[str, list[Served]], new_page: Callable[..., Any]
) -> None:
    """Two ``marimo run`` apps (two processes) and a tab of the signaller's page meet in one room,
    each seeing the other two's live video, on one signaller: the first app's process hosts it,
    the second's attaches. When the first server ends, the second hosts on the same port, and it
    and the tab still see each other."""
    room, (first, second) = marimo_apps
    port = first.signaller_port
    ada = open_app(new_page, first, "Ada")
    host = signaller_host(first.runtime)  # type: ignore[arg-type]
    assert (host["pid"], host["port"]) == (first.proc.pid, port), "the first app hosts"
    bob = open_app(new_page, second, "Bob")
    # The alone card says who else comes in: marimo apps among them.
    ada.get_by_test_id("connect").click()
    ada.get_by_test_id("alone").wait_for()
    assert "marimo app" in ada.get_by_test_id("alone-jupyter").inner_text()
    bob.get_by_test_id("connect").click()
    tab = new_page(f"http://127.0.0.1:{port}/?room={room}&autojoin=1&name=Tab")

    for page, others in ((ada, ["Bob", "Tab"]), (bob, ["Ada", "Tab"])):
        wait_remote_video(page, 2, shadow=HOST, timeout=60)
        wait_tiles(page, others)
        assert page.locator("[data-testid=remote-video]").count() == 2
    wait_videos(tab, 2, timeout=60)
    wait_tiles(tab, ["Ada", "Bob"])
    for page in (ada, bob):
        assert page.locator(".ipymeet-status-via").inner_text() == f"via http://127.0.0.1:{port}"

    # One signaller: the first app's process listens on the shared port, the second's only on
    # its own marimo port (it attached, it hosts nothing).
    assert listeners(port) == {first.proc.pid}
    assert listening_ports(second.proc.pid) == {app_port(second)}
    # Another tab of the first app is another session of the same process: its widget is served
    # by the same signaller, the process opens no other port.
    open_app(new_page, first, "Ada again")
    assert listening_ports(first.proc.pid) == {app_port(first), port}
    ARTIFACTS.mkdir(exist_ok=True)
    bob.screenshot(path=str(ARTIFACTS / "marimo-call.png"))

    # The first server ends: the second's process takes the signaller over on the same port, and
    # Bob and the tab, whose media never went through it, see each other again (Ada's page, its
    # server gone, is let in no more).
    started = time.monotonic()
    stop_server(first)
    ended = time.monotonic()
    print(f"the first app's server took {ended - started:.1f} s to end")
    wait_until(lambda: listeners(port) == {second.proc.pid}, 30, "the second app hosting")
    hosting = time.monotonic() - ended
    assert signaller_host(second.runtime)["pid"] == second.proc.pid  # type: ignore[arg-type]
    wait_tiles(tab, ["Bob"])
    wait_tiles(bob, ["Tab"])
    wait_remote_video(bob, 1, shadow=HOST)
    wait_videos(tab, 1)
    print(
        f"after the first app ended: the second hosted in {hosting:.1f} s, Ada's tile was gone "
        f"and Bob and the tab saw each other {time.monotonic() - ended:.1f} s"
    )
    ada.screenshot(path=str(ARTIFACTS / "marimo-host-gone.png"))
