"""The connection doctor in real Chromium: each problem forced, and a working page without one.

The standalone page's "Check connection" runs the same checks as ``room.diagnose()`` (the page
writes the same report into ``diagnosis``); the last test runs ``room.diagnose()`` in JupyterLab.
"""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ipymeet.server import Settings, SignallerThread

from ..support import Served, free_port, open_and_run, write_notebook
from .conftest import ARTIFACTS, model, wait_state
from .coturn import Coturn, coturn, free_udp_port

pytestmark = pytest.mark.browser

FAKE_UI = "--use-fake-ui-for-media-stream"

DONE_JS = """(scope) => {
  const model = scope === "" ? window.ipymeet && window.ipymeet.model : window[scope];
  const report = model && model.get("diagnosis");
  return report && report.state === "done";
}"""


def check(page: Any, *, scope: str = "", timeout: float = 40) -> dict[str, Any]:
    """Press "Check connection" (in ``#scope`` if given) and wait for the report."""
    root = f"#{scope} " if scope else ""
    page.locator(f"{root}[data-testid=check-connection]").click()
    page.wait_for_function(DONE_JS, arg=scope, timeout=timeout * 1000)
    if scope:
        report: dict[str, Any] = page.evaluate(f"() => window[{scope!r}].get('diagnosis')")
        return report
    return dict(model(page, "diagnosis"))


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["status"] for item in report["checks"]}


def fix(report: dict[str, Any], name: str) -> str:
    return str(next(item["fix"] for item in report["checks"] if item["name"] == name))


def shown_fix(page: Any, name: str, scope: str = "") -> str:
    root = f"#{scope} " if scope else ""
    return str(page.locator(f"{root}[data-testid=fix-{name}]").inner_text())


def test_a_working_page_has_host_candidates_and_no_problem(
    server: SignallerThread, new_page: Callable[..., Any]
) -> None:
    page = new_page(f"{server.url}/?room=doctor-ok")
    report = check(page)
    assert report["problems"] == 0, report
    assert statuses(report) == {
        "secure_context": "ok",
        "camera": "ok",
        "microphone": "ok",
        "signaller": "ok",
        "ice": "ok",
        "turn": "skipped",  # no TURN server on this signaller
    }
    assert report["ice"]["candidates"]["host"] > 0
    assert report["ice"]["complete"] is True
    (route,) = report["routes"]
    assert (route["kind"], route["url"].rstrip("/"), route["status"]) == (
        "explicit",
        server.url,
        "answered",
    )
    assert 0 <= route["ms"] < 4000
    assert report["devices"]["cameras"] >= 1
    panel = page.get_by_test_id("doctor")
    assert panel.is_visible()
    assert page.get_by_test_id("doctor-summary").inner_text() == "No problem found"
    ARTIFACTS.mkdir(exist_ok=True)
    panel.screenshot(path=str(ARTIFACTS / "doctor-working.png"))


def test_a_denied_camera_is_a_problem_with_its_fix(
    server: SignallerThread, launch: Callable[..., Any]
) -> None:
    # A context without the permission, in a browser that denies what it would ask (the usual
    # flags grant every request, whatever the context's permissions).
    page = launch(drop=(FAKE_UI,), add=("--deny-permission-prompts",), grant=False)
    page.goto(f"{server.url}/?room=doctor-denied")
    report = check(page)
    assert statuses(report)["camera"] == "problem"
    assert statuses(report)["signaller"] == "ok"
    assert "site settings" in fix(report, "camera")
    assert shown_fix(page, "camera") == fix(report, "camera")
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(".ipymeet-root").screenshot(path=str(ARTIFACTS / "doctor-denied.png"))


def _this_machines_address() -> str:
    """An address of this machine that is not loopback (eth0's), for a page that is not secure."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.254", 9))  # no packet is sent: this only picks the route
        address = str(probe.getsockname()[0])
    if address.startswith("127."):
        pytest.fail("this machine has no address but loopback: an insecure page needs one")
    return address


def test_an_insecure_page_is_told_to_use_https_or_localhost(new_page: Callable[..., Any]) -> None:
    address = _this_machines_address()
    signaller = SignallerThread(Settings(host=address, ice_servers=())).start()
    try:
        page = new_page(f"http://{address}:{signaller.port}/?room=doctor-insecure")
        assert page.evaluate("() => window.isSecureContext") is False
        report = check(page)
        assert report["secure"] is False
        assert statuses(report)["secure_context"] == "problem"
        assert (statuses(report)["camera"], statuses(report)["microphone"]) == ("skipped",) * 2
        assert "https://" in fix(report, "secure_context")
        assert "localhost" in fix(report, "secure_context")
        assert statuses(report)["signaller"] == "ok"  # its own origin answers
    finally:
        signaller.stop()


def test_an_unreachable_signaller_route_is_a_problem_with_its_fix(
    server: SignallerThread, new_page: Callable[..., Any]
) -> None:
    closed = free_port()
    page = new_page(f"{server.url}/?room=doctor-unreachable")
    page.evaluate(
        """async (url) => {
            const { mountPage } = await import('./static/widget.js');
            const el = document.createElement('div');
            el.id = 'second';
            document.body.append(el);
            window.second = mountPage(el, { room: 'doctor-unreachable', signalingUrl: url });
        }""",
        f"http://127.0.0.1:{closed}/",
    )
    report = check(page, scope="second")
    assert statuses(report)["signaller"] == "problem"
    (route,) = report["routes"]
    assert route["status"] == "failed"
    assert str(closed) in route["url"]
    assert "ipymeet serve" in fix(report, "signaller")
    assert shown_fix(page, "signaller", "second") == fix(report, "signaller")
    text = page.locator("#second [data-testid=doctor]").inner_text()
    assert f"http://127.0.0.1:{closed}/: no answer" in text


@pytest.mark.jupyter
def test_room_diagnose_in_jupyterlab_fills_in_after_its_cell(
    lab: Served, new_page: Callable[..., Any]
) -> None:
    """``room.diagnose()``: the kernel hands the page its ICE servers; the view shows the report at
    once, and the cell's output (the live report) fills in once the cell has ended."""
    result = lab.root / "doctor-result.json"
    result.unlink(missing_ok=True)
    write_notebook(
        lab.root / "doctor.ipynb",
        [
            "from ipymeet import VideoRoom\nroom = VideoRoom('doctor-lab')\nroom",
            "report = room.diagnose()\nreport",
        ],
    )
    page = new_page()
    open_and_run(page, lab, "doctor.ipynb")
    page.wait_for_selector(".ipymeet-root [data-testid=doctor][data-state=done]", timeout=60_000)
    assert page.locator(".ipymeet-root [data-testid=doctor-summary]").inner_text() == (
        "No problem found"
    )
    output = page.locator(".jp-OutputArea-output .widget-html-content")
    page.wait_for_function(
        """() => [...document.querySelectorAll('.jp-OutputArea-output .widget-html-content')]
            .some((el) => el.innerText.includes('Connection check: no problem found'))""",
        timeout=30_000,
    )
    assert "Secure page" in output.first.inner_text()
    page.evaluate(
        "(code) => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
        ".requestExecute({ code }).done",
        "import json, pathlib\n"
        f"pathlib.Path({str(result)!r}).write_text(json.dumps("
        "{'done': report.done, 'problems': report.problems, 'report': room.diagnosis}))",
    )
    seen = json.loads(result.read_text())
    assert seen["done"] is True
    assert seen["problems"] == []
    assert seen["report"]["ice"]["source"] == "kernel"
    kinds = [route["kind"] for route in seen["report"]["routes"]]
    assert kinds == ["direct", "proxy", "kernel"]
    assert all(route["status"] == "answered" for route in seen["report"]["routes"]), seen
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "doctor-lab.png"), full_page=True)
    output.first.screenshot(path=str(ARTIFACTS / "doctor-lab-output.png"))


# -- TURN: Debian's coturn on this machine's address, the servers from the call's enter -----------


@pytest.fixture
def turn_server(tmp_path: Path) -> Iterator[Coturn]:
    try:
        with coturn(_this_machines_address(), secrets.token_urlsafe(24), tmp_path) as server:
            yield server
    except RuntimeError as error:
        pytest.fail(str(error))


def check_in_a_call(page: Any, signaller: SignallerThread, room: str) -> dict[str, Any]:
    """Join ``room`` on the standalone page (the servers come with its ``enter``), then check."""
    page.goto(f"{signaller.url}/?room={room}&autojoin=1")
    wait_state(page, "waiting")
    return check(page)


def turn_check(report: dict[str, Any]) -> dict[str, Any]:
    return dict(next(item for item in report["checks"] if item["name"] == "turn"))


def test_a_turn_server_that_answers_gives_a_relay_candidate(
    turn_server: Coturn, new_page: Callable[..., Any]
) -> None:
    settings = Settings(
        ice_servers=(), turn_urls=(turn_server.url,), turn_secret=turn_server.secret
    )
    signaller = SignallerThread(settings).start()
    try:
        report = check_in_a_call(new_page(), signaller, "doctor-turn-ok")
        assert report["ice"]["source"] == "call"
        assert report["ice"]["candidates"]["relay"] > 0, report["ice"]
        assert turn_check(report)["status"] == "ok"
        assert report["problems"] == 0, report
        assert report["ice"]["servers"] == [{"urls": [turn_server.url], "credential": True}]
    finally:
        signaller.stop()


def test_a_wrong_turn_secret_is_refused_and_said_so(
    turn_server: Coturn, new_page: Callable[..., Any]
) -> None:
    settings = Settings(ice_servers=(), turn_urls=(turn_server.url,), turn_secret="not-the-secret")
    signaller = SignallerThread(settings).start()
    try:
        report = check_in_a_call(new_page(), signaller, "doctor-turn-401")
        assert report["ice"]["candidates"]["relay"] == 0
        assert [error["code"] for error in report["ice"]["errors"]][:1] == [401], report["ice"]
        turn = turn_check(report)
        assert turn["status"] == "problem"
        assert "refused the credentials" in turn["detail"]
        assert "--turn-secret" in turn["fix"]
    finally:
        signaller.stop()


def test_an_unreachable_turn_server_is_said_so(new_page: Callable[..., Any]) -> None:
    address = _this_machines_address()
    nothing = f"turn:{address}:{free_udp_port(address)}?transport=udp"
    settings = Settings(ice_servers=(), turn_urls=(nothing,), turn_secret="s" * 24)
    signaller = SignallerThread(settings).start()
    try:
        report = check_in_a_call(new_page(), signaller, "doctor-turn-silent")
        turn = turn_check(report)
        assert turn["status"] == "problem", report
        assert "did not answer" in turn["detail"]
        assert "--turn-url" in turn["fix"]
    finally:
        signaller.stop()
