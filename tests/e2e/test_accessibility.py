"""Accessibility in real Chromium: axe-core (npm, js/node_modules) finds no violation in the
standalone page in a call of three at desktop and phone sizes, nor inside the widget's own
element in JupyterLab and in Voilà; and the live region says each join, leave and error once."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ipymeet.server import Settings, SignallerThread

from ..support import Served, open_and_run, wait_for_file, write_notebook
from .conftest import ARTIFACTS, wait_remote_video, wait_state
from .remote import NOTEBOOKS

pytestmark = pytest.mark.browser

AXE = Path(__file__).resolve().parents[2] / "js" / "node_modules" / "axe-core" / "axe.min.js"
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}

# axe.run on the elements ``selector`` matches (the document without one); each violation with
# its nodes' targets.
AXE_RUN_JS = """async (selector) => {
  const context = selector ? document.querySelectorAll(selector) : document;
  if (selector && context.length === 0) throw new Error(`nothing matches ${selector}`);
  const result = await axe.run(context, { resultTypes: ['violations'] });
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.map((n) => ({ target: n.target.join(' '), summary: n.failureSummary })),
  }));
}"""


def axe_violations(page: Any, selector: str = "") -> list[dict[str, Any]]:
    """axe-core's violations in ``page`` (within the elements ``selector`` matches, if given)."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `npm ci` in js/")
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(content=AXE.read_text())
    return list(page.evaluate(AXE_RUN_JS, selector))


def readable(violations: list[dict[str, Any]]) -> str:
    """The violations, one rule a paragraph with the elements it found."""
    lines = []
    for v in violations:
        lines.append(f"{v['id']} ({v['impact']}): {v['help']}")
        lines.extend(f"    {n['target']}\n      {n['summary']}" for n in v["nodes"])
    return "\n".join(lines)


def assert_no_violations(page: Any, selector: str = "") -> None:
    violations = axe_violations(page, selector)
    assert violations == [], "axe-core found:\n" + readable(violations)


@pytest.mark.parametrize("size", list(SIZES))
def test_standalone_call_of_three_has_no_axe_violation(
    server: SignallerThread, new_page: Callable[..., Any], size: str
) -> None:
    """Three standalone pages in one room, in a call: axe-core finds nothing on any of them."""
    room = f"axe-{size}"
    pages = [
        new_page(f"{server.url}/?room={room}&autojoin=1&name={name}", viewport=SIZES[size])
        for name in ("Ada", "Grace", "Alan")
    ]
    for page in pages:
        wait_remote_video(page, count=2, timeout=60)
        wait_state(page, "in_call")
    ARTIFACTS.mkdir(exist_ok=True)
    pages[0].screenshot(path=str(ARTIFACTS / f"axe-{size}.png"))
    for page in pages:
        assert_no_violations(page)


# What the page's live regions said, in order: each sentence added to the announcements, and each
# text the error banner (an alert) was shown with.
HEARD_JS = """() => {
  const root = document.querySelector('.ipymeet-root');
  const log = root.querySelector('[data-testid=announcements]');
  const banner = root.querySelector('[data-testid=error]');
  window.heard = { polite: [], alert: [] };
  new MutationObserver((records) => {
    for (const r of records) for (const n of r.addedNodes) window.heard.polite.push(n.textContent);
  }).observe(log, { childList: true });
  let shown = '';
  new MutationObserver(() => {
    const now = banner.hidden ? '' : banner.textContent;
    if (now !== shown && now !== '') window.heard.alert.push(now);
    shown = now;
  }).observe(banner, { childList: true, characterData: true, subtree: true, attributes: true });
}"""


def heard(page: Any) -> dict[str, list[str]]:
    return dict(page.evaluate("() => window.heard"))


def wait_heard(page: Any, count: int) -> list[str]:
    """Wait until ``count`` sentences were said politely; then all of them."""
    page.wait_for_function("(n) => window.heard.polite.length >= n", arg=count)
    return heard(page)["polite"]


def test_joins_leaves_and_an_error_are_each_said_once(
    new_page: Callable[..., Any],
) -> None:
    """A listener on Ada's page hears, once each and in order: her joining, Grace joining and
    leaving, Alan joining, her leaving; and then, as an alert, that the room is full."""
    signaller = SignallerThread(Settings(ice_servers=(), max_peers=2)).start()
    try:
        url = f"{signaller.url}/?room=heard"
        ada = new_page(f"{url}&name=Ada")
        ada.wait_for_selector(".ipymeet-root")
        ada.evaluate(HEARD_JS)
        ada.get_by_test_id("connect").click()
        wait_state(ada, "waiting")
        grace = new_page(f"{url}&autojoin=1&name=Grace")
        wait_remote_video(ada)
        grace.get_by_test_id("connect").click()  # Hang up
        wait_state(grace, "left")
        alan = new_page(f"{url}&autojoin=1&name=Alan")
        wait_remote_video(ada)
        ada.get_by_test_id("connect").click()  # Hang up
        wait_state(ada, "left")
        grace.get_by_test_id("connect").click()  # back in, with Alan: the room is full
        wait_state(grace, "in_call")
        wait_state(alan, "in_call")
        ada.get_by_test_id("connect").click()
        wait_state(ada, "failed")
        said = [
            "You joined “heard”; no one else is here yet.",
            "Grace joined.",
            "Grace left.",
            "Alan joined.",
            "You left the call.",
        ]
        assert wait_heard(ada, len(said)) == said
        error = ada.get_by_test_id("error").inner_text()
        assert "full" in error.lower(), error
        ARTIFACTS.mkdir(exist_ok=True)
        ada.screenshot(path=str(ARTIFACTS / "heard.png"))
        # Nothing more comes: the failed join adds no polite sentence, and the alert came once.
        grace.get_by_test_id("connect").click()
        wait_state(grace, "left")
        alan.wait_for_function("() => !document.querySelector('[data-testid=remote-video]')")
        assert heard(ada) == {"polite": said, "alert": [error]}
    finally:
        signaller.stop()


@pytest.mark.jupyter
def test_widget_in_jupyterlab_has_no_axe_violation(
    lab: Served, new_page: Callable[..., Any]
) -> None:
    """A VideoRoom in a JupyterLab notebook, in a call with a standalone tab: axe-core finds
    nothing inside the widget's element (JupyterLab's own page has findings of its own)."""
    invite = lab.root / "axe-invite"
    write_notebook(
        lab.root / "axe.ipynb",
        [
            "import pathlib\nfrom ipymeet import VideoRoom\n"
            "room = VideoRoom('axe-lab', name='Ada')\nroom",
            f"room.join()\npathlib.Path({str(invite)!r}).write_text(room.invite_url)",
        ],
    )
    page = new_page(viewport=SIZES["desktop"])
    open_and_run(page, lab, "axe.ipynb")
    tab = new_page(wait_for_file(invite) + "&autojoin=1&name=Grace")
    wait_remote_video(page)
    wait_remote_video(tab)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "axe-lab.png"))
    assert_no_violations(page, ".ipymeet-root")


@pytest.mark.jupyter
def test_widgets_in_voila_have_no_axe_violation(
    voila_factory: Callable[[Path], Served], new_page: Callable[..., Any], tmp_path: Path
) -> None:
    """`voila notebooks/demo.ipynb`, its two widgets in a call: axe-core finds nothing inside
    either widget's element."""
    notebook = shutil.copy(NOTEBOOKS / "demo.ipynb", tmp_path / "demo.ipynb")
    served = voila_factory(Path(notebook))
    page = new_page(served.url, viewport=SIZES["desktop"])
    page.wait_for_selector(".ipymeet-root", timeout=90_000)
    wait_remote_video(page, count=2, timeout=60)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "axe-voila.png"))
    assert_no_violations(page, ".ipymeet-root")
