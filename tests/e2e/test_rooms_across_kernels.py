"""Rooms that span kernels, in real servers and real Chromium: two notebooks of one JupyterLab,
the same in Notebook 7, visitors of a Voilà dashboard (one of whose kernels is killed), and pages
that reach nothing of the server but its Jupyter or Voilà port (the kernel route).

What each kernel sees is read from files its observers write (a later cell would wait for the
kernel to be idle, and browser → kernel messages wait for it too).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..support import Served, open_and_run, wait_for_file, write_notebook
from .conftest import ARTIFACTS, tile_frames, wait_remote_video
from .remote import (
    DASHBOARD,
    Dashboard,
    Remote,
    Visitor,
    open_and_run_notebook7,
    signaller_host,
    wait_who,
    who,
)
from .test_jupyter import LOGGER, wait_kernel

pytestmark = [pytest.mark.browser, pytest.mark.jupyter]

CLIPBOARD = ["camera", "microphone", "clipboard-read", "clipboard-write"]


def test_alone_the_widget_says_where_it_listens_and_how_others_come(
    lab: Served, new_page: Callable[..., Any]
) -> None:
    """In the room alone, the stage shows a card, not an error: the signaller's address, that
    any notebook or dashboard of this user on this machine joins with the room name (the kernel's
    signaller is shared), and the invite link, selectable, which Copy puts on the clipboard."""
    facts = lab.root / "alone.json"
    write_notebook(
        lab.root / "alone.ipynb",
        [
            "import json, pathlib\nfrom ipymeet import VideoRoom\n"
            "room = VideoRoom('alone-1', name='Ada')\nroom.join()\n"
            f"pathlib.Path({str(facts)!r}).write_text(json.dumps("
            "{'invite': room.invite_url, 'shared': room._shared, 'base': room._invite_base}))\n"
            "room",
        ],
    )
    page = new_page(permissions=CLIPBOARD, viewport={"width": 1100, "height": 900})
    open_and_run(page, lab, "alone.ipynb")
    card = page.get_by_test_id("alone")
    card.wait_for(state="visible", timeout=60_000)
    kernel = json.loads(wait_for_file(facts))
    assert kernel["shared"] is True, "inside a kernel the signaller is shared with other kernels"
    assert page.get_by_test_id("invite-link").input_value() == kernel["invite"]
    where = page.get_by_test_id("alone-where").inner_text()
    assert kernel["base"].split("://")[1] in where
    assert "share" in where
    assert "Voilà dashboard" in page.get_by_test_id("alone-jupyter").inner_text()
    assert page.locator(".ipymeet-error").is_hidden()  # calm: no error banner

    page.get_by_test_id("copy-invite").click()
    page.get_by_test_id("copy-invite").filter(has_text="Copied").wait_for()
    assert page.evaluate("() => navigator.clipboard.readText()") == kernel["invite"]
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(".ipymeet-root").screenshot(path=str(ARTIFACTS / "alone-jupyterlab.png"))
    # Someone comes: the card gives way to their tile.
    tab = new_page(kernel["invite"] + "&autojoin=1&name=Visitor")
    tab.wait_for_selector("[data-testid=remote-video]")
    card.wait_for(state="hidden")


# -- two notebooks, two kernels ------------------------------------------------------------------


def last_peers(entries: list[list[Any]], label: str) -> list[str] | None:
    """The names in the latest ``peers`` the kernel's observer saw for ``label``."""
    seen = [value for who, name, value in entries if who == label and name == "peers"]
    return sorted(p["name"] for p in seen[-1]) if seen else None


def two_notebooks(root: Path, room: str) -> dict[str, Path]:
    """Two notebooks, each a VideoRoom in ``room`` (Ada in one, Bob in the other) whose kernel
    logs its state, route and peers; their log files by name."""
    logs = {}
    for label, name in (("a", "Ada"), ("b", "Bob")):
        log = root / f"{room}-{label}.jsonl"
        log.unlink(missing_ok=True)
        write_notebook(
            root / f"{room}-{label}.ipynb",
            [
                LOGGER.format(log=str(log)),
                f"room = VideoRoom({room!r}, name={name!r})\n"
                f"record({label!r}, room, names=('state', 'connected_via', 'peers'))\n"
                "room.join()\nroom",
            ],
        )
        logs[label] = log
    return logs


def assert_the_two_kernels_meet(logs: dict[str, Path], pages: dict[str, Any]) -> None:
    for page in pages.values():
        wait_remote_video(page, count=1, timeout=60)
    # Each kernel knows the other (its own signaller link, not the page's) ...
    wait_kernel(logs["a"], lambda e: last_peers(e, "a") == ["Bob"])
    wait_kernel(logs["b"], lambda e: last_peers(e, "b") == ["Ada"])
    # ... and the two kernels are two processes (two notebooks, not two widgets of one).
    for page in pages.values():
        assert page.locator("[data-testid=remote-video]").count() == 1


def test_two_notebooks_in_one_jupyterlab_meet(lab: Served, new_page: Callable[..., Any]) -> None:
    """Two notebooks (two kernels) of one JupyterLab, each `VideoRoom("x")`: they meet, with video
    both ways, and each kernel's `peers` names the other."""
    logs = two_notebooks(lab.root, "lab-kernels")
    pages = {label: new_page() for label in logs}
    for label, page in pages.items():
        open_and_run(page, lab, f"lab-kernels-{label}.ipynb")
    assert_the_two_kernels_meet(logs, pages)


def test_two_notebooks_in_notebook_7_meet(notebook7: Served, new_page: Callable[..., Any]) -> None:
    """The same two notebooks in Notebook 7 (`jupyter notebook`)."""
    logs = two_notebooks(notebook7.root, "nb7-kernels")
    pages = {label: new_page() for label in logs}
    for label, page in pages.items():
        open_and_run_notebook7(page, notebook7, f"nb7-kernels-{label}.ipynb")
    assert_the_two_kernels_meet(logs, pages)


# -- a Voilà dashboard: each visitor a kernel ---------------------------------------------------


def wait_videos(page: Any, count: int, timeout: float = 30) -> None:
    """Wait until exactly ``count`` remote videos are on ``page``, all playing and advancing."""
    page.wait_for_function(
        "(n) => document.querySelectorAll('[data-testid=remote-video]').length === n",
        arg=count,
        timeout=timeout * 1000,
    )
    wait_remote_video(page, count=count, timeout=timeout)


#: The longest a remote video may stand still while the room heals (it runs at about 20 fps).
STALL = 2.5


def say(page: Any, text: str) -> None:
    page.get_by_test_id("chat-input").fill(text)
    page.get_by_test_id("chat-input").press("Enter")


def heard(page: Any, name: str, text: str) -> None:
    """Wait until ``page``'s chat shows ``text`` from ``name``."""
    message = page.get_by_test_id("chat-message").filter(has_text=text)
    message.filter(has_text=name).wait_for(timeout=30_000)


def everyone_meets(visitors: list[Visitor]) -> None:
    """Each visitor sees every other's video, and its kernel lists them all."""
    for visitor in visitors:
        wait_videos(visitor.page, len(visitors) - 1, timeout=60)
        others = [v.name for v in visitors if v is not visitor]
        wait_who(visitor.page, [f"{visitor.name} (you)", *others])


def test_a_dashboard_visitor_types_a_name_and_joins(voila_dashboard: Dashboard) -> None:
    """The first visitor of the dashboard: its form takes a name and Join enters the room; the
    list (from its kernel's `room.peers`) shows only them, and the stage says how others come.
    Its kernel, the first to need a signaller, hosts the shared one."""
    ada = voila_dashboard.visit("Ada")
    wait_who(ada.page, ["Ada (you)"])
    ada.page.get_by_test_id("alone").wait_for()
    assert "Voilà dashboard" in ada.page.get_by_test_id("alone-jupyter").inner_text()
    assert ada.page.get_by_test_id("name-input").input_value() == "Ada"
    assert voila_dashboard.host() == ada.pid


def test_voila_visitors_meet_and_the_room_outlives_its_host(voila_dashboard: Dashboard) -> None:
    """Three visitors of a Voilà dashboard (three kernels) meet, each seeing the other two's video.
    The kernel hosting the signaller is killed (SIGKILL): the other two keep their video, another
    kernel hosts, and their lists are whole again; a fourth visitor then joins and sees the two."""
    visitors = [voila_dashboard.visit(name) for name in ("Ada", "Bob", "Cy")]
    assert len({v.pid for v in visitors}) == 3, "each visit has a kernel of its own"
    everyone_meets(visitors)
    say(visitors[0].page, "hello from Ada")
    for visitor in visitors[1:]:
        heard(visitor.page, "Ada", "hello from Ada")

    host = voila_dashboard.host()
    assert host in {v.pid for v in visitors}, "a visitor's kernel hosts the signaller"
    gone = next(v for v in visitors if v.pid == host)
    stay = [v for v in visitors if v is not gone]
    pairs = {v.name: next(o.name for o in stay if o is not v) for v in stay}
    tiles = {}
    for visitor in stay:
        found = tile_frames(visitor.page, pairs[visitor.name])
        assert found is not None
        tiles[visitor.name] = found
    os.kill(gone.pid, signal.SIGKILL)
    killed = time.monotonic()

    # Media goes browser to browser: each of the two keeps seeing the other throughout, on the
    # same connection (the same member id, the same tile), while another kernel takes the
    # signaller over, the pages re-enter and the one gone is dropped.
    def whole() -> bool:
        return int(signaller_host(voila_dashboard.runtime)["pid"]) != host and all(
            sorted(who(v.page)) == sorted([f"{v.name} (you)", pairs[v.name]])
            and v.page.locator("[data-testid=remote-video]").count() == 1
            for v in stay
        )

    advanced = dict.fromkeys(tiles, killed)
    while not whole():
        now = time.monotonic()
        for visitor in stay:
            seen = tile_frames(visitor.page, pairs[visitor.name])
            assert seen is not None, f"{visitor.name} lost {pairs[visitor.name]}'s tile"
            assert seen[0] == tiles[visitor.name][0], "the other came back as a new member"
            if seen[1] > tiles[visitor.name][1]:
                tiles[visitor.name], advanced[visitor.name] = seen, now
            stalled = now - advanced[visitor.name]
            assert stalled < STALL, f"{visitor.name}'s video stood still {stalled:.1f} s"
        assert now - killed < 30, "the room did not become whole again"
        time.sleep(0.1)
    print(f"room whole again {time.monotonic() - killed:.1f} s after the host's kernel was killed")
    assert int(signaller_host(voila_dashboard.runtime)["pid"]) in {v.pid for v in stay}
    for visitor in stay:
        wait_videos(visitor.page, 1)

    late = voila_dashboard.visit("Dee")
    everyone_meets([*stay, late])


# -- remote: the page reaches only the Jupyter or Voilà port ------------------------------------


def refused(address: tuple[str, int]) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(address) != 0


def route(page: Any) -> str:
    """What the view's status line says the page is connected through."""
    text: str = page.locator(".ipymeet-status-via").inner_text()
    return text


def test_remote_voila_visitors_meet_over_the_kernel_route(
    remote_server: Remote, new_page: Callable[..., Any]
) -> None:
    """Voilà in a network namespace, only its port forwarded to the browser's loopback: two
    visitors cannot reach the signaller, yet meet, signalling through their widgets' comms."""
    room = "remote-lobby"
    served = remote_server.voila(DASHBOARD, env={"IPYMEET_DASHBOARD_ROOM": room})
    dashboard = Dashboard(served, room, new_page)
    ada = dashboard.visit("Ada")
    # Alone, Ada's stage does not offer a link to the server's loopback: others come from Jupyter.
    ada.page.get_by_test_id("alone").wait_for(timeout=60_000)
    assert "on the server" in ada.page.get_by_test_id("alone-where").inner_text()
    assert ada.page.get_by_test_id("invite-link").is_hidden()
    visitors = [ada, dashboard.visit("Bob")]
    everyone_meets(visitors)
    for visitor in visitors:
        visitor.page.wait_for_function(
            "() => document.querySelector('.ipymeet-status-via')?.textContent === 'via kernel'"
        )
    # Nothing of the server but Voilà is in the browser's reach.
    port = remote_server.signaller_port
    assert refused(("127.0.0.1", port))
    assert refused((remote_server.address, port))


def test_remote_jupyterlab_notebook_meets_a_voila_visitor(
    remote_server: Remote, new_page: Callable[..., Any], tmp_path: Path
) -> None:
    """JupyterLab (without jupyter-server-proxy) and Voilà on one remote machine, each reached
    only at its own port: a notebook and a dashboard visitor meet over the kernel route."""
    room = "remote-mixed"
    log = tmp_path / "remote-lab.jsonl"
    lab = remote_server.lab(tmp_path)
    write_notebook(
        tmp_path / "remote.ipynb",
        [
            LOGGER.format(log=str(log)),
            f"room = VideoRoom({room!r}, name='Notebook')\n"
            "record('nb', room, names=('state', 'connected_via', 'peers'))\nroom.join()\nroom",
        ],
    )
    served = remote_server.voila(DASHBOARD, env={"IPYMEET_DASHBOARD_ROOM": room})
    page = new_page()
    open_and_run(page, lab, "remote.ipynb")
    visitor = Dashboard(served, room, new_page).visit("Visitor")
    wait_videos(page, 1, timeout=60)
    wait_videos(visitor.page, 1, timeout=60)
    wait_who(visitor.page, ["Visitor (you)", "Notebook"])
    entries = wait_kernel(log, lambda e: last_peers(e, "nb") == ["Visitor"])
    via = [value for who, name, value in entries if name == "connected_via" and value]
    assert via[-1:] == ["kernel"], entries
    assert route(visitor.page) == "via kernel"
