"""Errors a person can act on: each shows in the view and in the model's ``error`` trait.

Camera problems leave the person in the call receive-only: they still see the others.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ipymeet.server import Settings, SignallerThread

from ..support import free_port
from .conftest import model, wait_model, wait_remote_video

pytestmark = pytest.mark.browser

FAKE_UI = "--use-fake-ui-for-media-stream"
FAKE_DEVICES = "--use-fake-device-for-media-stream"


@pytest.fixture(scope="module")
def server() -> Iterator[SignallerThread]:
    # ipymeet.test: a name of this machine other than localhost (as a LAN name would be), which a
    # signaller serves only when told to (the Host check, tests/security/test_hosts.py).
    signaller = SignallerThread(Settings(ice_servers=(), allowed_hosts=("ipymeet.test",))).start()
    yield signaller
    signaller.stop()


def joins_receive_only(
    page: Any, server: SignallerThread, new_page: Callable[..., Any], room: str, code: str
) -> str:
    """Join ``room`` on ``page``: it reports ``code``, stays in the call and sees a normal peer."""
    page.goto(f"{server.url}/?room={room}")
    page.get_by_test_id("connect").click()
    wait_model(page, "error_code", code)
    wait_model(page, "state", "waiting")
    message = page.get_by_test_id("error").inner_text()
    other = new_page(f"{server.url}/?room={room}&autojoin=1")
    wait_remote_video(page)  # receive-only still receives
    wait_model(other, "state", "in_call")
    assert other.locator("[data-testid=remote-video]").count() == 1
    return message


def test_camera_denied(
    server: SignallerThread, launch: Callable[..., Any], new_page: Callable[..., Any]
) -> None:
    """Permission refused: a plain message saying how to allow it; the call goes on."""
    page = launch(drop=(FAKE_UI,), add=("--deny-permission-prompts",), grant=False)
    message = joins_receive_only(page, server, new_page, "denied-1", "camera_denied")
    assert "blocked" in message.lower() or "denied" in message.lower(), message
    assert model(page, "error") == message


def test_no_camera(
    server: SignallerThread, launch: Callable[..., Any], new_page: Callable[..., Any]
) -> None:
    """No camera or microphone at all: said plainly; the call goes on receive-only."""
    page = launch(drop=(FAKE_DEVICES,))
    message = joins_receive_only(page, server, new_page, "nocam-1", "no_camera")
    assert "no camera" in message.lower(), message


def test_not_a_secure_context(
    server: SignallerThread, launch: Callable[..., Any], new_page: Callable[..., Any]
) -> None:
    """A page on a plain-http, non-local name cannot use the camera: said plainly, with the fix."""
    page = launch(add=("--host-resolver-rules=MAP ipymeet.test 127.0.0.1",))
    room = "insecure-1"
    page.goto(f"http://ipymeet.test:{server.port}/?room={room}")
    assert page.evaluate("() => window.isSecureContext") is False
    page.get_by_test_id("connect").click()
    wait_model(page, "error_code", "insecure_context")
    wait_model(page, "state", "waiting")
    message = page.get_by_test_id("error").inner_text()
    assert "https" in message.lower(), message
    new_page(f"{server.url}/?room={room}&autojoin=1")
    wait_remote_video(page)


def test_signaller_unreachable(server: SignallerThread, new_page: Callable[..., Any]) -> None:
    """Nothing listening where the signaller should be: failed, with what was tried."""
    closed = free_port()
    page = new_page(f"{server.url}/?room=unreachable-1")
    page.evaluate(
        """async (url) => {
            const { mountPage } = await import('./static/widget.js');
            const el = document.createElement('div');
            el.id = 'second';
            document.body.append(el);
            window.second = mountPage(el, { room: 'unreachable-1', signalingUrl: url });
        }""",
        f"http://127.0.0.1:{closed}/",
    )
    page.locator("#second [data-testid=connect]").click()
    page.wait_for_function("() => window.second.get('state') === 'failed'", timeout=30_000)
    assert page.evaluate("() => window.second.get('error_code')") == "unreachable"
    message = page.locator("#second [data-testid=error]").inner_text()
    assert "reach" in message.lower(), message
    assert str(closed) in message
