"""The connection doctor, the kernel's side: ``VideoRoom.diagnose()`` and the report it returns.

The checks run in the browser that shows the room (``js/src/doctor.ts``, judged in
``js/src/diagnose.ts``): only the page knows whether it is a secure context, whether it may use
the camera, which routes to the signaller it can open and which ICE candidates it gathers. The
kernel starts a check with a ``diagnose`` custom message carrying the ICE servers to gather with:
the signaller's STUN servers and, with TURN configured, credentials made for this check only
(``server/core/turn.py``'s :func:`ice_servers_for`, the same function as the ``enter``
acknowledgement's). They travel in the message and never in a trait. The page writes its report
into the ``diagnosis`` trait as each check finishes.

The answer cannot arrive while the cell that asked is still running: what a page sends its kernel
(trait changes included) waits until the cell ends. So :meth:`VideoRoom.diagnose` returns at once
with a :class:`Diagnosis`, a live report: displayed, it fills in when the page answers (an
``ipywidgets.HTML`` the kernel rewrites then); read in a later cell, ``done``, ``problems`` and
``report`` have the page's answer. The room's own view shows the report at once, in the page.
"""

from __future__ import annotations

import html
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets

from ..server.core.turn import ice_servers_for

if TYPE_CHECKING:
    from .binding import KernelServer

#: The marks of a check's status, in the text and HTML reports.
MARKS = {"ok": "✓", "warning": "!", "problem": "✕", "skipped": "-", "running": "…"}
_COLOURS = {
    "ok": "#1a7f37",
    "warning": "#bf8700",
    "problem": "#cf222e",
    "skipped": "#59636e",
    "running": "#59636e",
}

#: What a report says before the page has answered.
WAITING = (
    "Waiting for the page. The check runs in the browser that shows this room; its answer reaches "
    "the kernel once the cell that asked has finished (what a page sends its kernel waits while a "
    "cell runs). This report fills in then; the room's view shows it at once."
)


def new_check_id() -> str:
    """A fresh id for one check (the page's answer carries it)."""
    return "k" + secrets.token_hex(9)


def ice_servers(server: KernelServer | None, check: str) -> list[dict[str, Any]] | None:
    """The ICE servers for check ``check`` of a widget on ``server``, the kernel's signaller, with
    TURN credentials of its own; None for a widget with a ``signaling_url`` (the kernel does not
    know that signaller's servers). The page adds those of its call's last ``enter`` that are
    not among them (a hub's service may hand out a TURN server the kernel knows nothing of)."""
    if server is None:
        return None
    servers: list[dict[str, Any]] = ice_servers_for(server.settings, f"doctor-{check}")
    return servers


class Diagnosis:
    """The report of one connection check (:meth:`VideoRoom.diagnose`), live.

    ``report`` is the page's answer, a dict (None until it comes): ``state`` ("running" or
    "done"), ``checks`` (each ``name``, ``title``, ``status`` — "ok", "warning", "problem",
    "skipped", "running" — ``detail`` and ``fix``), ``routes`` (each route to the signaller:
    ``kind``, ``url``, ``status``, ``ms``, ``detail``), ``ice`` (the candidates gathered by type,
    the ``icecandidateerror`` codes, the servers' URLs without their credentials), ``devices``
    and ``problems`` (how many checks found one). Displayed, it fills in as the page answers.
    """

    def __init__(self, check: str, current: Callable[[], dict[str, Any]]) -> None:
        self.id = check
        self._current = current
        self._view: ipywidgets.HTML | None = None

    @property
    def report(self) -> dict[str, Any] | None:
        """The page's report for this check, or None before it answered."""
        value = self._current()
        return value if value.get("id") == self.id else None

    @property
    def done(self) -> bool:
        """Whether the page has finished every check."""
        report = self.report
        return report is not None and report.get("state") == "done"

    @property
    def checks(self) -> list[dict[str, Any]]:
        """The checks so far, in order (empty before the page answered)."""
        report = self.report
        return list(report.get("checks", [])) if report is not None else []

    @property
    def problems(self) -> list[dict[str, Any]]:
        """The checks that found a problem, each with its ``fix``."""
        return [check for check in self.checks if check.get("status") == "problem"]

    def changed(self) -> None:
        """The ``diagnosis`` trait changed: show the new state where this report is displayed."""
        if self._view is not None:
            self._view.value = self._repr_html_()

    def __repr__(self) -> str:
        report = self.report
        if report is None:
            return f"Connection check: {WAITING}"
        lines = [f"Connection check: {summary(report)}"]
        for check in report.get("checks", []):
            status = str(check.get("status", ""))
            lines.append(
                f"  {MARKS.get(status, '?')} {check.get('title', '')}: {check.get('detail', '')}"
            )
            if check.get("name") == "signaller":
                lines.extend(f"      {route_line(route)}" for route in report.get("routes", []))
            if check.get("fix"):
                lines.append(f"      Fix: {check['fix']}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        report = self.report
        style = "font-family:system-ui,sans-serif;font-size:13px;line-height:1.4"
        if report is None:
            return f'<div style="{style}"><b>Connection check</b>: {html.escape(WAITING)}</div>'
        rows = []
        for check in report.get("checks", []):
            status = str(check.get("status", ""))
            colour = _COLOURS.get(status, "#59636e")
            extra = ""
            if check.get("name") == "signaller":
                routes = "".join(
                    f"<li>{html.escape(route_line(route))}</li>"
                    for route in report.get("routes", [])
                )
                extra += f'<ul style="margin:2px 0;padding-left:16px;color:#59636e">{routes}</ul>'
            if check.get("fix"):
                extra += (
                    f'<div style="border-left:3px solid {colour};padding-left:8px;margin-top:2px">'
                    f"{html.escape(str(check['fix']))}</div>"
                )
            rows.append(
                f'<tr><td style="color:{colour};font-weight:700;vertical-align:top">'
                f"{MARKS.get(status, '?')}</td>"
                f'<td style="font-weight:600;vertical-align:top;padding-right:12px;'
                f'white-space:nowrap">{html.escape(str(check.get("title", "")))}</td>'
                f"<td>{html.escape(str(check.get('detail', '')))}{extra}</td></tr>"
            )
        head = f"<b>Connection check</b>: {html.escape(summary(report))}"
        return f'<div style="{style}">{head}<table>{"".join(rows)}</table></div>'

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        # A live view where widgets render (it is rewritten when the page answers), and the
        # report as it stands for those that show only text or HTML.
        if self._view is None:
            self._view = ipywidgets.HTML(self._repr_html_())
        bundle: dict[str, Any] = dict(self._view._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = repr(self)
        bundle["text/html"] = self._repr_html_()
        return bundle

    def close(self) -> None:
        """Close the live view (the room closed, or a newer check replaced this one)."""
        if self._view is not None:
            self._view.close()


def summary(report: dict[str, Any]) -> str:
    """The report's one-line summary: still checking, no problem, or how many."""
    if report.get("state") != "done":
        return "checking…"
    checks = report.get("checks", [])
    problems = sum(1 for check in checks if check.get("status") == "problem")
    warnings = sum(1 for check in checks if check.get("status") == "warning")
    if not problems and not warnings:
        return "no problem found"
    parts = []
    if problems:
        parts.append(f"{problems} problem{'s' if problems != 1 else ''}")
    if warnings:
        parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
    return ", ".join(parts)


def route_line(route: dict[str, Any]) -> str:
    """One route to the signaller, as the report lists it."""
    kind = str(route.get("kind", ""))
    url = str(route.get("url", ""))
    where = "kernel route" if kind == "kernel" else url if kind == "explicit" else f"{kind} {url}"
    ms = route.get("ms")
    took = f" in {round(ms)} ms" if isinstance(ms, int | float) else ""
    detail = str(route.get("detail", ""))
    status = route.get("status")
    if status == "answered":
        return f"{where}: answered{took}" + (f" ({detail})" if detail else "")
    if status == "failed":
        return f"{where}: no answer{took}" + (f" ({detail})" if detail else "")
    if status == "not_tried":
        return f"{where}: not tried: {detail}"
    return f"{where}: trying…"
