"""The kernel route in a real JupyterLab: pages that signal through their widgets' comms."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from ..support import Served, open_and_run, write_notebook
from .conftest import wait_remote_video
from .test_jupyter import LOGGER, wait_kernel

pytestmark = [pytest.mark.browser, pytest.mark.jupyter]

WAITING = "Waiting for the kernel: a cell is running; the call connects when it ends"


def in_call(entries: list[list[Any]], *labels: str) -> bool:
    last = {who: value for who, name, value in entries if name == "state"}
    return all(last.get(label) == "in_call" for label in labels)


def statuses(page: Any) -> list[str]:
    return list(
        page.eval_on_selector_all("[data-testid=status]", "(els) => els.map((e) => e.textContent)")
    )


def test_two_widgets_call_each_other_over_the_kernel_route(
    lab: Served, new_page: Callable[..., Any]
) -> None:
    """Two widgets of one kernel, each forced onto the kernel route: video both ways, and both
    the kernel and the view say the call goes through the kernel."""
    log = lab.root / "kroute.jsonl"
    write_notebook(
        lab.root / "kroute.ipynb",
        [
            LOGGER.format(log=str(log)),
            "a = VideoRoom('kroute-1', name='Ada', route='kernel')\n"
            "b = VideoRoom('kroute-1', name='Grace', route='kernel')\n"
            "record('a', a); record('b', b)",
            "a",
            "b",
            "a.join()\nb.join()",
        ],
    )
    page = new_page()
    open_and_run(page, lab, "kroute.ipynb")
    wait_remote_video(page, count=2, timeout=60)
    entries = wait_kernel(log, lambda e: in_call(e, "a", "b"))
    via = {who: value for who, name, value in entries if name == "connected_via" and value}
    assert via == {"a": "kernel", "b": "kernel"}, entries
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=status]')]"
        ".every((e) => e.textContent.endsWith('via kernel'))"
    )


def test_a_running_cell_holds_the_kernel_route_and_the_call_connects_when_it_ends(
    lab: Served, new_page: Callable[..., Any]
) -> None:
    """``join()`` and then ``time.sleep(8)`` in the same cell: the page's signalling waits for
    the cell, the view says why, nothing times out, and the call connects once the cell ends."""
    started, done = lab.root / "kbusy-started", lab.root / "kbusy-done"
    write_notebook(
        lab.root / "kbusy.ipynb",
        [
            "import pathlib, time\nfrom ipymeet import VideoRoom\n"
            "a = VideoRoom('kbusy-1', name='Ada', route='kernel')\n"
            "b = VideoRoom('kbusy-1', name='Grace', route='kernel')",
            "a",
            "b",
            f"a.join()\nb.join()\npathlib.Path({str(started)!r}).touch()\ntime.sleep(8)\n"
            f"pathlib.Path({str(done)!r}).touch()",
        ],
    )
    page = new_page()
    open_and_run(page, lab, "kbusy.ipynb")
    deadline = time.monotonic() + 60
    while not started.exists():
        assert time.monotonic() < deadline, "the sleeping cell never started"
        time.sleep(0.1)
    page.wait_for_function(
        "(text) => { const all = [...document.querySelectorAll('[data-testid=status]')];"
        " return all.length === 2 && all.every((e) => e.textContent === text); }",
        arg=WAITING,
        timeout=6_000,
    )
    assert not done.exists(), f"the waiting line came only after the cell: {statuses(page)}"
    assert page.locator(".ipymeet-root[data-state=failed]").count() == 0
    wait_remote_video(page, count=2, timeout=60)
    assert done.exists(), "the call connected while the cell still ran"
    assert all(text.endswith("via kernel") for text in statuses(page)), statuses(page)
