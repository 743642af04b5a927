"""Widgets in a real JupyterLab and a real Voila, driven through their UI in real Chromium."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..support import (
    KERNEL_IDLE_JS,
    Served,
    free_port,
    open_and_run,
    wait_for_file,
    write_notebook,
)
from .conftest import wait_remote_video

pytestmark = [pytest.mark.browser, pytest.mark.jupyter]

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"

# Kernel-side observers append what they see to a file: the kernel's view, not the page's.
LOGGER = """
import json, pathlib
from ipymeet import VideoRoom
LOG = pathlib.Path({log!r})
def note(*entry):
    with LOG.open("a") as f:
        f.write(json.dumps(entry) + "\\n")
def record(label, room, names=("state", "connected_via", "error_code")):
    room.observe(lambda change: note(label, change.name, change.new), names=list(names))
"""


def kernel_log(path: Path) -> list[list[Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_kernel(
    path: Path, predicate: Callable[[list[list[Any]]], bool], timeout: float = 60
) -> list[list[Any]]:
    """Poll the kernel's log until ``predicate`` holds for it."""
    deadline = time.monotonic() + timeout
    while True:
        entries = kernel_log(path)
        if predicate(entries):
            return entries
        if time.monotonic() > deadline:
            raise AssertionError(f"kernel log never satisfied the condition: {entries}")
        time.sleep(0.1)


def states(entries: list[list[Any]], label: str) -> list[str]:
    return [value for who, name, value in entries if who == label and name == "state"]


def is_ordered_run(seen: list[str], order: list[str]) -> bool:
    """``seen`` follows ``order`` without going back (fast changes may coalesce in transit)."""
    positions = [order.index(s) for s in seen if s in order]
    return len(positions) == len(seen) and positions == sorted(positions)


def test_two_widgets_call_each_other_through_both_routes(
    lab: Served, new_page: Callable[..., Any]
) -> None:
    """Two VideoRooms in one notebook, one reaching the kernel's signaller directly and one through
    jupyter-server-proxy, call each other: both views show moving remote video, and the kernel
    sees both states go joining -> waiting -> in_call."""
    log, errors = lab.root / "two.jsonl", lab.root / "two-errors.txt"
    write_notebook(
        lab.root / "two.ipynb",
        [
            LOGGER.format(log=str(log)),
            "a = VideoRoom('lab-two', name='Ada', route='direct', max_peers=2)\n"
            "b = VideoRoom('lab-two', name='Grace', route='proxy')\n"
            "record('a', a); record('b', b)",
            "a",
            "b",
            "a.join()\nb.join()",
        ],
    )
    page = new_page()
    open_and_run(page, lab, "two.ipynb")
    wait_remote_video(page, count=2, timeout=60)
    entries = wait_kernel(
        log, lambda e: states(e, "a")[-1:] == ["in_call"] and states(e, "b")[-1:] == ["in_call"]
    )
    order = ["joining", "waiting", "in_call"]
    assert is_ordered_run(states(entries, "a"), order), entries
    assert is_ordered_run(states(entries, "b"), order), entries
    via = {who: value for who, name, value in entries if name == "connected_via" and value}
    assert via["a"].startswith("http://127.0.0.1:"), via
    assert "/proxy/" in via["b"], via
    assert via["b"].startswith(lab.url.rstrip("/")), via
    # Errors reach the kernel's traits: a third widget finds the room full, and one pointed at
    # a closed port cannot reach its signaller.
    run_in_kernel(
        page,
        "c = VideoRoom('lab-two', name='Third'); record('c', c); c.join()\n"
        f"d = VideoRoom('x', signaling_url='http://127.0.0.1:{free_port()}');"
        " record('d', d); d.join()",
    )
    entries = wait_kernel(
        log, lambda e: states(e, "c")[-1:] == ["failed"] and states(e, "d")[-1:] == ["failed"]
    )
    codes = {who: value for who, name, value in entries if name == "error_code" and value}
    assert codes == {"c": "room_full", "d": "unreachable"}, entries
    run_in_kernel(
        page, f"import pathlib; pathlib.Path({str(errors)!r}).write_text(c.error + '|' + d.error)"
    )
    full, unreachable = errors.read_text().split("|")
    assert "full" in full
    assert "reach" in unreachable
    wait_remote_video(page, count=2)  # the call of the first two goes on


def test_a_busy_kernel_does_not_stall_signalling(lab: Served, new_page: Callable[..., Any]) -> None:
    """While a cell sleeps, a standalone tab joins the notebook's room and the call connects on
    both sides."""
    invite, started, done = (lab.root / f"busy-{n}" for n in ("invite", "started", "done"))
    write_notebook(
        lab.root / "busy.ipynb",
        [
            "import pathlib, time\nfrom ipymeet import VideoRoom\n"
            "room = VideoRoom('busy-1', name='Notebook')\nroom",
            f"room.join()\npathlib.Path({str(invite)!r}).write_text(room.invite_url)",
            f"pathlib.Path({str(started)!r}).touch()\ntime.sleep(120)\n"
            f"pathlib.Path({str(done)!r}).touch()",
        ],
    )
    page = new_page()
    open_and_run(page, lab, "busy.ipynb")
    deadline = time.monotonic() + 60
    wait_for_file(invite)
    while not started.exists():
        assert time.monotonic() < deadline, "the sleeping cell never started"
        time.sleep(0.1)
    page.wait_for_selector(".ipymeet-root[data-state=waiting]")
    tab = new_page(invite.read_text() + "&autojoin=1&name=Visitor")
    wait_remote_video(tab)
    wait_remote_video(page)
    # (Not the kernel's status: widget messages handled on a subshell report "idle" meanwhile.)
    assert not done.exists(), "the call must connect while the cell is still running"


def test_voila_renders_the_demo_and_its_two_widgets_connect(
    voila_factory: Callable[[Path], Served], new_page: Callable[..., Any], tmp_path: Path
) -> None:
    """`voila notebooks/demo.ipynb`: the widgets render and call each other."""
    notebook = shutil.copy(NOTEBOOKS / "demo.ipynb", tmp_path / "demo.ipynb")
    served = voila_factory(Path(notebook))
    page = new_page(served.url)
    page.wait_for_selector(".ipymeet-root", timeout=90_000)
    wait_remote_video(page, count=2, timeout=60)


def run_in_kernel(page: Any, code: str) -> None:
    """Execute ``code`` in the open notebook's kernel (as if from a new cell)."""
    page.evaluate(
        "(code) => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
        ".requestExecute({ code }).done",
        code,
    )


def registry_names(page: Any, lab: Served, room: str) -> list[str] | None:
    """The names in ``room`` as the kernel's signaller has them (run in the kernel): all of them
    when this kernel hosts the signaller, or as it follows the room when attached to another
    notebook's kernel (then only while one of its own widgets is in the room)."""
    out = lab.root / f"members-{room}.json"
    out.unlink(missing_ok=True)
    run_in_kernel(
        page,
        "import json, pathlib\nfrom ipymeet import kernel_signaller\n"
        f"pathlib.Path({str(out)!r}).write_text(json.dumps("
        f"[m.name for m in kernel_signaller().members({room!r})]))",
    )
    return json.loads(out.read_text()) if out.exists() else None


def kernel_hosts(page: Any, lab: Served) -> bool:
    """Whether the open notebook's kernel hosts the user's signaller (run in the kernel)."""
    out = lab.root / "hosting.json"
    out.unlink(missing_ok=True)
    run_in_kernel(
        page,
        "import json, pathlib\nfrom ipymeet import kernel_signaller\n"
        f"pathlib.Path({str(out)!r}).write_text(json.dumps(kernel_signaller().hosting))",
    )
    return bool(json.loads(out.read_text()))


def test_rerunning_a_cell_replaces_its_room_and_closing_ends_the_call(
    lab: Served, new_page: Callable[..., Any]
) -> None:
    """Running a cell again hangs up the widget its last run made (in a room of two, the new one
    would otherwise find the room full); closing a widget ends its call, and the other side sees
    it leave."""
    invite = lab.root / "rerun-invite.txt"
    write_notebook(
        lab.root / "rerun.ipynb",
        [
            "import pathlib\nfrom ipymeet import VideoRoom\n"
            "room = VideoRoom('rerun-1', name='Notebook')\nroom.join()\n"
            f"pathlib.Path({str(invite)!r}).write_text(room.invite_url)\nroom",
        ],
    )
    page = new_page()
    open_and_run(page, lab, "rerun.ipynb")
    page.wait_for_selector(".ipymeet-root[data-state=waiting]")
    tab = new_page(invite.read_text() + "&autojoin=1&name=Visitor")
    wait_remote_video(tab)

    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    page.wait_for_selector(".ipymeet-root[data-state=in_call]")
    wait_remote_video(tab)
    assert page.locator(".ipymeet-root").count() == 1
    assert sorted(registry_names(page, lab, "rerun-1") or []) == ["Notebook", "Visitor"]

    run_in_kernel(page, "room.close()")
    tab.wait_for_function("() => window.ipymeet.model.get('state') === 'waiting'")
    assert tab.locator("[data-testid=remote-video]").count() == 0
    # The host has the visitor alone; a kernel attached to it no longer follows the room.
    expected = ["Visitor"] if kernel_hosts(page, lab) else []
    assert registry_names(page, lab, "rerun-1") == expected


def test_widgets_and_tabs_share_a_room_chat_mute_and_quality(
    lab: Served, new_page: Callable[..., Any]
) -> None:
    """Two widgets and two standalone tabs in one room: everyone sees the three others; a message
    sent from Python reaches a tab's chat, one typed in a tab reaches the Python callback; a tab's
    mute shows in the kernel's `peers`; the kernel's `stats` show frames from every peer."""
    log, invite = lab.root / "mixed.jsonl", lab.root / "mixed-invite.txt"
    write_notebook(
        lab.root / "mixed.ipynb",
        [
            LOGGER.format(log=str(log)),
            "a = VideoRoom('mixed', name='Ada')\nb = VideoRoom('mixed', name='Bob')\n"
            "record('a', a, names=('state', 'peers'))\n"
            "a.on_message(lambda sender, text: note('a', 'chat', [str(sender), text]))\n"
            f"a.join()\nb.join()\npathlib.Path({str(invite)!r}).write_text(a.invite_url)",
            "a",
            "b",
        ],
    )
    page = new_page()
    open_and_run(page, lab, "mixed.ipynb")
    page.wait_for_selector(".ipymeet-root[data-state=in_call]")
    tabs = [new_page(f"{invite.read_text()}&autojoin=1&name=Tab{i}") for i in (1, 2)]
    for tab in tabs:
        wait_remote_video(tab, count=3, timeout=60)
    wait_remote_video(page, count=6, timeout=60)  # three in each widget's view

    run_in_kernel(page, "a.send('from python')")
    tabs[0].wait_for_function(
        """() => window.ipymeet.model.get('messages').some(
            (m) => m.text === 'from python' && m.name === 'Ada')"""
    )
    tabs[0].get_by_test_id("chat-input").fill("from the tab")
    tabs[0].get_by_test_id("chat-input").press("Enter")
    wait_kernel(log, lambda e: ["a", "chat", ["Tab1", "from the tab"]] in e)

    tabs[0].get_by_test_id("mic").click()

    def tab1_muted(entries: list[list[Any]]) -> bool:
        latest = [value for who, name, value in entries if who == "a" and name == "peers"]
        return bool(latest) and any(p["name"] == "Tab1" and p["audio"] is False for p in latest[-1])

    wait_kernel(log, tab1_muted)

    stats_file = lab.root / "mixed-stats.json"
    deadline = time.monotonic() + 30
    while True:
        run_in_kernel(
            page,
            f"import json, pathlib; pathlib.Path({str(stats_file)!r}).write_text(json.dumps("
            "{p['name']: a.stats.get(p['id'], {}).get('fps_in', 0) for p in a.peers}))",
        )
        fps = json.loads(stats_file.read_text())
        if len(fps) == 3 and all(value > 0 for value in fps.values()):
            break
        assert time.monotonic() < deadline, f"frames per second seen by the kernel: {fps}"
        time.sleep(0.5)


def two_widgets_in_a_call(
    lab: Served, new_page: Callable[..., Any], room: str, *, setup: str = "", after: str = ""
) -> Any:
    """Run a notebook in which widgets ``a`` (Ada) and ``b`` (Bob) join ``room``; return its page
    once both views show the other's moving video. ``setup`` is a first cell, ``after`` runs
    right after the widgets are made."""
    cells = [setup] if setup else []
    cells += [
        "from ipymeet import VideoRoom\n"
        f"a = VideoRoom({room!r}, name='Ada')\nb = VideoRoom({room!r}, name='Bob')\n"
        f"{after}\na.join()\nb.join()\na",
        "b",
    ]
    write_notebook(lab.root / f"{room}.ipynb", cells)
    page = new_page()
    open_and_run(page, lab, f"{room}.ipynb")
    wait_remote_video(page, count=2, timeout=60)
    return page


def test_snapshots_from_a_running_cell(lab: Served, new_page: Callable[..., Any]) -> None:
    """`await room.snapshot(peer)` inside a cell returns the remote video's current frame at its
    size, not blank; `snapshot()` gives the own camera; `snapshot_png()` gives PNG bytes."""
    out = lab.root / "snapshots.json"
    page = two_widgets_in_a_call(lab, new_page, "snap")
    page.wait_for_function(KERNEL_IDLE_JS)
    # The received size changes while the bandwidth estimate ramps up: compare the snapshot with
    # the video element's size read right after it, a few times if it moved in between.
    for _ in range(5):
        run_in_kernel(
            page,
            "import json, pathlib\n"
            "peer = a.peers[0]['id']\n"
            "remote = await a.snapshot(peer)\n"
            "own = await a.snapshot()\n"
            "png = a.snapshot_png(peer)\n"
            f"pathlib.Path({str(out)!r}).write_text(json.dumps({{\n"
            "    'peer': peer, 'remote': [*remote.shape, str(remote.dtype), float(remote.std())],\n"
            "    'own': [*own.shape, float(own.std())], 'png': png[:8].hex()}))",
        )
        result = json.loads(out.read_text())
        sizes = page.evaluate(
            "(id) => [...document.querySelectorAll(`[data-peer-id='${id}'] video`)]"
            ".map((v) => [v.videoHeight, v.videoWidth])",
            result["peer"],
        )
        if result["remote"][:2] in sizes:
            break
    height, width, channels, dtype, spread = result["remote"]
    assert [height, width] in sizes, (result, sizes)
    assert (channels, dtype) == (3, "uint8")
    assert spread > 5, "the remote frame is blank"
    own_height, own_width, _, own_spread = result["own"]
    assert (own_height, own_width) == (720, 1280)  # the fake camera's own size
    assert own_spread > 5
    assert result["png"] == "89504e470d0a1a0a"


def test_screen_share_driven_from_python(lab: Served, new_page: Callable[..., Any]) -> None:
    """`room.screen = True` from the kernel shares the screen: the other widget's browser sees
    it, and the kernel's `peers` say so; `False` goes back to the camera."""
    log = lab.root / "screen.jsonl"
    page = two_widgets_in_a_call(
        lab,
        new_page,
        "py-screen",
        setup=LOGGER.format(log=str(log)),
        after="record('b', b, names=('peers',))",
    )

    def ada_sharing(value: bool) -> Callable[[list[list[Any]]], bool]:
        def check(entries: list[list[Any]]) -> bool:
            latest = [v for who, name, v in entries if who == "b" and name == "peers"]
            return bool(latest) and any(
                p["name"] == "Ada" and p["screen"] is value for p in latest[-1]
            )

        return check

    run_in_kernel(page, "a.screen = True")
    wait_kernel(log, ada_sharing(True))
    run_in_kernel(page, "a.screen = False")
    wait_kernel(log, ada_sharing(False))
    wait_remote_video(page, count=2)
