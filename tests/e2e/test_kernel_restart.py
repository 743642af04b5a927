"""Restarting the kernel that hosts the signaller, in a real JupyterLab: the widget says the
signaller is gone, a guest on an invite link waits reconnecting, and re-running the cell brings
the room back, with the guest in it, on its own.

The JupyterLab is this module's own: in the suite's shared one, another notebook's kernel may be
hosting the user's signaller, and this kernel would only be attached to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ..support import (
    KERNEL_IDLE_JS,
    Served,
    open_and_run,
    start_lab,
    stop_server,
    write_notebook,
)
from .conftest import wait_remote_video, wait_state

pytestmark = [pytest.mark.browser, pytest.mark.jupyter]

RESTART_JS = """() => {
  window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.restart();
}"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A JupyterLab whose only kernel is this test's: it hosts the signaller."""
    root = tmp_path_factory.mktemp("restart-lab")
    served = start_lab(root, tmp_path_factory.mktemp("restart-lab-state"))
    try:
        yield served
    finally:
        stop_server(served)


def test_the_room_comes_back_after_a_kernel_restart_and_a_rerun(
    lab: Served, new_page: Callable[..., Any]
) -> None:
    invite = lab.root / "restart-invite.txt"
    write_notebook(
        lab.root / "restart.ipynb",
        [
            "from ipymeet import VideoRoom\n"
            "room = VideoRoom('restart-1', name='Host', route='direct')\n"
            "room",
            f"room.join()\nopen({str(invite)!r}, 'w').write(room.invite_url)",
        ],
    )
    page = new_page()
    open_and_run(page, lab, "restart.ipynb")
    page.wait_for_selector(".ipymeet-root[data-state=waiting]", timeout=90_000)
    guest = new_page(invite.read_text() + "&name=Guest&autojoin=1")
    wait_state(guest, "in_call")
    page.wait_for_selector(".ipymeet-root[data-state=in_call]")
    wait_remote_video(guest)
    port = guest.evaluate("() => location.port")
    assert page.locator(".ipymeet-status-via").inner_text().endswith(f":{port}")

    page.evaluate(RESTART_JS)
    wait_state(guest, "reconnecting")
    # The widget says so: the signaller it used is gone with the kernel.
    page.wait_for_selector(".ipymeet-root[data-state=reconnecting]", timeout=20_000)
    page.wait_for_function(
        "() => /re-run the cell/i.test(document.querySelector('[data-testid=error]').textContent)",
        timeout=30_000,
    )
    page.wait_for_function(KERNEL_IDLE_JS, timeout=60_000)
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    # The new kernel's signaller is where the old one was: the guest enters again by itself.
    wait_state(guest, "in_call", timeout=60)
    page.wait_for_selector(".ipymeet-root[data-state=in_call]", timeout=60_000)
    assert page.locator(".ipymeet-root").count() == 1
    # The new widget reaches the restarted kernel's signaller on the old port.
    assert page.locator(".ipymeet-status-via").inner_text().endswith(f":{port}")
    # The old view, refused by the new kernel's signaller at its next attempt (up to 5 s apart),
    # ends its call; the guest then lets it go and has the new one only.
    guest.wait_for_function(
        "() => JSON.stringify(window.ipymeet.call.remotePeers.map((p) => p.name)) === '[\"Host\"]'",
        timeout=20_000,
    )
    old_view = page.evaluate("() => document.body.innerText.includes('restarted')")
    assert old_view is False  # the re-run replaced the old output
    wait_remote_video(guest)
