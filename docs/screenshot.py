"""Make docs/screenshot.png: the demo notebook in a real JupyterLab, mid-call (fake cameras).

python docs/screenshot.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, wait_remote_video  # noqa: E402
from tests.support import open_and_run, start_lab, stop_server  # noqa: E402


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copy(ROOT / "notebooks" / "demo.ipynb", root / "demo.ipynb")
        lab = start_lab(root, root / ".state")
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                context = browser.new_context(
                    permissions=["camera", "microphone"], viewport={"width": 1100, "height": 1500}
                )
                page = context.new_page()
                page.set_default_timeout(90_000)
                open_and_run(page, lab, "demo.ipynb")
                wait_remote_video(page, count=2, timeout=60)
                page.evaluate(
                    "() => window.jupyterapp.commands.execute('application:toggle-left-area')"
                )
                page.locator(".jp-Cell").nth(1).scroll_into_view_if_needed()
                page.screenshot(path=str(ROOT / "docs" / "screenshot.png"))
                browser.close()
        finally:
            stop_server(lab)


if __name__ == "__main__":
    main()
