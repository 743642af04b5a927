"""The keyboard in real Chromium: the shortcuts (M, V, S, C, ?) on the standalone page and in
JupyterLab, where ``audio`` / ``video`` / ``screen`` follow them in the kernel and where keys
pressed in a notebook cell never reach the widget; Tab reaches every control, with a ring."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ipymeet.server import SignallerThread

from ..support import KERNEL_IDLE_JS, Served, open_and_run, write_notebook
from .conftest import ARTIFACTS, model, wait_model, wait_state
from .remote import open_and_run_notebook7
from .test_jupyter import LOGGER, kernel_log, wait_kernel

pytestmark = pytest.mark.browser


#: The local tracks' `enabled`: what muting really changes in the call.
TRACKS_JS = """(kind) => window.ipymeet.call.localStream
  .getTracks().filter((t) => t.kind === kind).map((t) => t.enabled)"""

#: The focused element's test id (or tag) and its outline while focused.
FOCUSED_JS = """() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  return [el.dataset.testid || el.className || el.tagName, style.outlineStyle, style.outlineWidth];
}"""


def pressed(page: Any, test_id: str) -> str | None:
    return page.get_by_test_id(test_id).get_attribute("aria-pressed")


def test_shortcuts_on_the_standalone_page(
    server: SignallerThread, new_page: Callable[..., Any]
) -> None:
    """With the page's widget focused (a click on it), M mutes, V turns the camera off, S shares
    the screen and S again stops; C goes to the chat field, where typing "m" mutes nothing; ?
    shows the list, Escape closes it and focus goes back."""
    page = new_page(f"{server.url}/?room=keys&name=Ada&autojoin=1")
    wait_state(page, "waiting")
    page.wait_for_function("() => window.ipymeet.call.localStream !== null")
    page.get_by_test_id("status").click()  # not a control: the widget's root takes focus
    assert page.evaluate("() => document.activeElement.classList.contains('ipymeet-root')")

    page.keyboard.press("m")
    wait_model(page, "audio", False)
    assert pressed(page, "mic") == "false"
    assert page.evaluate(TRACKS_JS, "audio") == [False]
    page.keyboard.press("v")
    wait_model(page, "video", False)
    assert pressed(page, "cam") == "false"
    assert page.evaluate(TRACKS_JS, "video") == [False]
    page.keyboard.press("m")
    wait_model(page, "audio", True)
    assert page.evaluate(TRACKS_JS, "audio") == [True]

    # Headless Chromium with the fake media UI shares a screen without asking.
    page.keyboard.press("s")
    wait_model(page, "screen", True)
    page.wait_for_function("() => window.ipymeet.call.sharingScreen === true")
    assert pressed(page, "screen") == "true"
    page.keyboard.press("s")
    wait_model(page, "screen", False)
    page.wait_for_function("() => window.ipymeet.call.sharingScreen === false")

    page.keyboard.press("c")
    chat = page.get_by_test_id("chat-input")
    assert page.evaluate("() => document.activeElement.dataset.testid") == "chat-input"
    assert chat.input_value() == ""  # the C went no further
    page.keyboard.type("m v s ?")
    assert chat.input_value() == "m v s ?"
    assert model(page, "audio") is True
    assert model(page, "video") is False
    assert model(page, "screen") is False
    assert page.get_by_test_id("shortcuts").is_hidden()

    page.get_by_test_id("mic").focus()
    page.keyboard.press("?")
    dialog = page.get_by_test_id("shortcuts")
    dialog.wait_for(state="visible")
    assert page.evaluate("() => document.activeElement.dataset.testid") == "shortcuts-close"
    assert "Mute or unmute your microphone" in dialog.inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "keys-shortcut-list.png"))
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    assert page.evaluate("() => document.activeElement.dataset.testid") == "mic"
    assert model(page, "audio") is True


def test_tab_reaches_every_control_with_a_ring_and_space_presses(
    server: SignallerThread, new_page: Callable[..., Any]
) -> None:
    """Tab from the top of the page visits each control of the widget, each showing an outline
    while focused; Space and Enter press the focused button."""
    page = new_page(f"{server.url}/?room=keys-tab&name=Ada&autojoin=1")
    wait_state(page, "waiting")
    page.wait_for_function("() => window.ipymeet.call.localStream !== null")
    visited: list[list[str]] = []
    for _ in range(40):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED_JS)
        if visited and focused == visited[0]:
            break
        visited.append(focused)
        if focused[0] == "mic":
            page.locator(".ipymeet-bar").screenshot(path=str(ARTIFACTS / "keys-focus-ring.png"))
    reached = {name for name, _, _ in visited}
    # In a call: the room and name fields are disabled, and so is Send with nothing typed.
    wanted = {"mic", "cam", "screen", "connect", "camera-select", "check-connection", "chat-input"}
    assert wanted <= reached, visited
    for name, style, width in visited:
        if name in wanted:
            assert style != "none", (name, style, width)
            assert width != "0px", (name, style, width)

    page.get_by_test_id("mic").focus()
    page.keyboard.press("Space")
    wait_model(page, "audio", False)
    page.keyboard.press("Enter")
    wait_model(page, "audio", True)


# -- JupyterLab ---------------------------------------------------------------------------------

#: The open notebook's cell types, in order.
CELL_TYPES_JS = """() => window.jupyterapp.shell.currentWidget.content.widgets
  .map((cell) => cell.model.type)"""


def intents(log: Path) -> dict[str, Any]:
    """The latest `audio`, `video` and `screen` the kernel has seen (its observers' log)."""
    return {name: value for who, name, value in kernel_log(log) if who == "room"}


@pytest.mark.jupyter
@pytest.mark.parametrize("app", ["lab", "notebook7"])
def test_shortcuts_in_jupyterlab_and_notebook7_follow_in_the_kernel_and_stay_in_the_widget(
    app: str, request: pytest.FixtureRequest, new_page: Callable[..., Any]
) -> None:
    """In JupyterLab and in Notebook 7, M, V and S pressed in the focused widget change
    `room.audio`, `room.video` and `room.screen` in the kernel, and the notebook's own M (a
    markdown cell) does not fire; with focus in a notebook cell instead, M turns the cell to
    markdown and the widget hears nothing."""
    served: Served = request.getfixturevalue(app)
    log = served.root / "keys.jsonl"
    write_notebook(
        served.root / "keys.ipynb",
        [
            LOGGER.format(log=str(log)),
            "room = VideoRoom('lab-keys', name='Ada')\n"
            "record('room', room, names=('state', 'audio', 'video', 'screen'))\n"
            "room.join()\nroom",
        ],
    )
    page = new_page()
    (open_and_run if app == "lab" else open_and_run_notebook7)(page, served, "keys.ipynb")
    wait_kernel(log, lambda e: intents(log).get("state") == "waiting")
    page.wait_for_function("() => document.querySelector('[data-testid=mic]:not([disabled])')")
    types = page.evaluate(CELL_TYPES_JS)
    assert types == ["code", "code"], types

    page.get_by_test_id("status").click()
    assert page.evaluate("() => !!document.activeElement.closest('.ipymeet-root')")
    page.keyboard.press("m")
    wait_kernel(log, lambda e: intents(log).get("audio") is False)
    page.keyboard.press("v")
    wait_kernel(log, lambda e: intents(log).get("video") is False)
    page.keyboard.press("s")
    wait_kernel(log, lambda e: intents(log).get("screen") is True)
    # S again stops a share once it runs (before, it asks again: the button's own behaviour).
    page.get_by_test_id("screen").filter(has_text="Stop sharing").wait_for()
    page.keyboard.press("s")
    wait_kernel(log, lambda e: intents(log).get("screen") is False)
    page.keyboard.press("m")
    wait_kernel(log, lambda e: intents(log).get("audio") is True)
    # None of those keys reached the notebook's command mode (M: markdown, S: save, V: paste).
    assert page.evaluate(CELL_TYPES_JS) == types

    # Focus in the notebook, in command mode on the first cell: M is the notebook's.
    page.locator(".jp-Cell .jp-InputPrompt").first.click()
    page.keyboard.press("Escape")
    assert page.evaluate("() => !document.activeElement.closest('.ipymeet-root')")
    seen = len(kernel_log(log))
    page.keyboard.press("m")
    page.wait_for_function(f"() => ({CELL_TYPES_JS})()[0] === 'markdown'")
    assert pressed(page, "mic") == "true"
    page.wait_for_function(KERNEL_IDLE_JS)
    assert [e for e in kernel_log(log)[seen:] if e[1] == "audio"] == []
