"""The connection doctor in the kernel: ``room.diagnose()`` asks the page with ICE servers made for
the check (TURN credentials never in a trait), and the live report follows the page's answer in the
``diagnosis`` trait. The page's part is played by setting the trait as its comm would."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from ipywidgets.embed import embed_data

from ipymeet import VideoRoom
from ipymeet.server import choose
from ipymeet.server.core.turn import credentials
from ipymeet.widget import diagnose

TURN_SECRET = "doctor-test-turn-secret"


@pytest.fixture
def turn_kernel_signaller(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A kernel signaller of this test's own, configured with a TURN server and its secret."""
    monkeypatch.setattr(choose, "_kernel_signaller", None)
    monkeypatch.setenv("IPYMEET_SHARE", "0")
    monkeypatch.setenv("IPYMEET_ICE_SERVERS", '[{"urls": "stun:stun.example.org:3478"}]')
    monkeypatch.setenv("IPYMEET_TURN_URLS", "turn:turn.example.org:3478")
    monkeypatch.setenv("DOCTOR_TURN_SECRET", TURN_SECRET)
    monkeypatch.setenv("IPYMEET_TURN_SECRET", "env:DOCTOR_TURN_SECRET")
    yield
    if choose._kernel_signaller is not None:
        choose._kernel_signaller.stop()


def _custom(room: VideoRoom) -> list[dict[str, Any]]:
    """The custom messages the kernel sends the browser from now on."""
    sent: list[dict[str, Any]] = []

    def send(data: Any = None, buffers: Any = None, **_: Any) -> None:
        if data["method"] == "custom":
            sent.append(data["content"])

    room.comm.send = send
    return sent


def _check(name: str, status: str, detail: str = "", fix: str = "") -> dict[str, Any]:
    return {"name": name, "title": name.title(), "status": status, "detail": detail, "fix": fix}


def _route(kind: str, url: str, status: str, ms: float | None, detail: str) -> dict[str, Any]:
    return {"kind": kind, "url": url, "status": status, "ms": ms, "detail": detail}


def _report(check: str, *, state: str = "done", camera: str = "ok") -> dict[str, Any]:
    """What the page writes into ``diagnosis`` (js/src/diagnose.ts)."""
    fix = "Allow the camera in the browser's site settings, then check again."
    checks = [
        _check("secure_context", "ok", "http://127.0.0.1:8888 is a secure context."),
        _check("camera", camera, "Camera access is blocked <here>.", fix if camera != "ok" else ""),
        _check("signaller", "ok", "Reached through direct in 4 ms."),
        _check("ice", "ok" if state == "done" else "running", "Gathered 2 host candidates."),
    ]
    return {
        "id": check,
        "state": state,
        "started": 1.0,
        "finished": 2.0 if state == "done" else None,
        "page": "http://127.0.0.1:8888",
        "secure": True,
        "checks": checks,
        "routes": [
            _route("direct", "http://127.0.0.1:1", "answered", 4.2, ""),
            _route("kernel", "kernel", "not_tried", None, "not tried during a call"),
        ],
        "ice": {"source": "kernel", "servers": [{"urls": ["turn:x"], "credential": True}]},
        "devices": {"cameras": 1, "microphones": 1},
        "problems": sum(1 for c in checks if c["status"] == "problem"),
    }


@pytest.mark.usefixtures("turn_kernel_signaller")
def test_diagnose_hands_the_page_turn_credentials_for_the_check_and_never_a_trait() -> None:
    room = VideoRoom("doctor-1")
    try:
        sent = _custom(room)
        before = time.time()
        report = room.diagnose()
        (message,) = sent
        assert message["type"] == "diagnose"
        assert message["id"] == report.id
        stun, turn = message["ice_servers"]
        assert stun == {"urls": "stun:stun.example.org:3478"}
        assert turn["urls"] == ["turn:turn.example.org:3478"]
        expiry, member = turn["username"].split(":", 1)
        assert member == f"doctor-{report.id}"
        server = choose._kernel_signaller
        assert server is not None
        assert int(expiry) >= int(before) + server.settings.turn_ttl
        # The TURN server's own check (coturn's use-auth-secret) of that credential.
        expected = credentials(TURN_SECRET, member, int(expiry))
        assert expected == (turn["username"], turn["credential"])
        # The page answers: nothing of the credential reaches the widget's state.
        room.set_state({"diagnosis": _report(report.id)})
        state = json.dumps(embed_data(views=[room])["manager_state"])
        assert turn["credential"] not in state
        assert turn["username"] not in state
        assert TURN_SECRET not in state
    finally:
        room.close()


def test_the_report_waits_for_the_page_then_follows_its_answer() -> None:
    room = VideoRoom("doctor-2")
    try:
        _custom(room)
        report = room.diagnose()
        assert (report.report, report.done, report.checks, report.problems) == (None, False, [], [])
        assert "Waiting for the page" in repr(report)
        assert "once the cell that asked has finished" in repr(report)
        # Another check's report (an older one, or another page's) is not this one's.
        room.set_state({"diagnosis": _report("someone-else")})
        assert report.report is None
        room.set_state({"diagnosis": _report(report.id, state="running")})
        assert report.report is not None
        assert not report.done
        assert "checking" in repr(report)
        room.set_state({"diagnosis": _report(report.id, camera="problem")})
        assert report.done
        assert [p["name"] for p in report.problems] == ["camera"]
        text = repr(report)
        assert text.startswith("Connection check: 1 problem")
        assert "✕ Camera: Camera access is blocked <here>." in text
        assert "Fix: Allow the camera in the browser's site settings" in text
        assert "direct http://127.0.0.1:1: answered in 4 ms" in text
        assert "kernel route: not tried: not tried during a call" in text
        page = report._repr_html_()
        assert "blocked &lt;here&gt;" in page  # the page's words are escaped
        assert "1 problem" in page
        assert room.diagnosis["id"] == report.id
    finally:
        room.close()


def test_a_displayed_report_fills_in_when_the_page_answers() -> None:
    """The live view: an HTML widget the kernel rewrites when ``diagnosis`` changes."""
    room = VideoRoom("doctor-3")
    try:
        _custom(room)
        report = room.diagnose()
        bundle = report._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle
        assert "Waiting for the page" in bundle["text/plain"]
        assert "Waiting for the page" in bundle["text/html"]
        view = report._view
        assert view is not None
        assert "Waiting for the page" in view.value
        room.set_state({"diagnosis": _report(report.id)})
        assert "no problem found" in view.value
        assert "Reached through direct in 4 ms." in view.value
        # A newer check: the older report's view closes and follows no more.
        newer = room.diagnose()
        assert view.comm is None
        room.set_state({"diagnosis": _report(newer.id, camera="problem")})
        assert "no problem found" in view.value
    finally:
        room.close()


def test_the_views_check_asks_the_kernel_which_answers_with_the_same_id() -> None:
    room = VideoRoom("doctor-4")
    try:
        sent = _custom(room)
        room._handle_custom_msg({"type": "diagnose_request", "id": "v0123"}, [])
        assert [(m["type"], m["id"]) for m in sent] == [("diagnose", "v0123")]
        assert isinstance(sent[0]["ice_servers"], list)
        room._handle_custom_msg({"type": "diagnose_request", "id": ""}, [])
        room._handle_custom_msg({"type": "diagnose_request", "id": "x" * 500}, [])
        assert [m["type"] for m in sent[1:]] == ["error", "error"]
    finally:
        room.close()


def test_a_room_on_another_signaller_leaves_the_servers_to_the_page() -> None:
    """The kernel does not know the servers of a signaller given by URL: None, the call's then."""
    room = VideoRoom("doctor-5", signaling_url="http://127.0.0.1:9")
    try:
        sent = _custom(room)
        room.diagnose()
        assert sent[0]["ice_servers"] is None
        assert diagnose.ice_servers(None, "k1") is None
    finally:
        room.close()


def test_a_closed_room_cannot_be_diagnosed() -> None:
    room = VideoRoom("doctor-6")
    room.close()
    with pytest.raises(RuntimeError, match="closed"):
        room.diagnose()


def test_summaries_and_route_lines() -> None:
    assert diagnose.summary({"state": "running"}) == "checking…"
    assert diagnose.summary({"state": "done", "checks": []}) == "no problem found"
    two = [_check("a", "problem"), _check("b", "problem"), _check("c", "warning")]
    assert diagnose.summary({"state": "done", "checks": two}) == "2 problems, 1 warning"
    failed = _route("proxy", "https://h/proxy/1/", "failed", 4000, "timeout")
    assert diagnose.route_line(failed) == "proxy https://h/proxy/1/: no answer in 4000 ms (timeout)"
    running = _route("kernel", "kernel", "running", None, "")
    assert diagnose.route_line(running) == "kernel route: trying…"
