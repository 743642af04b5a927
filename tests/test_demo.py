"""The README's demo command, run as written (as root here, as in most containers)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support import free_port

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.jupyter


def test_the_demo_command_serves_the_demo_notebook(tmp_path: Path) -> None:
    """`bash .ci/demo` sets up, starts JupyterLab (even as root) and prints the URL of the demo
    notebook; that URL, with its token, opens JupyterLab on the demo, whose file is served."""
    port = free_port()
    env = {
        **os.environ,
        # Keep the user's own Jupyter state out of it.
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
    }
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        demo = subprocess.Popen(
            ["bash", ".ci/demo", f"--port={port}", "--port-retries=0", "--no-browser"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        pattern = re.compile(
            rf"http://(?:localhost|127\.0\.0\.1):{port}/lab/tree/demo\.ipynb\?token=\w+"
        )
        deadline = time.monotonic() + 240
        url = None
        while url is None:
            text = log.read_text(errors="replace")
            found = pattern.search(text)
            if found:
                url = found.group(0)
            elif demo.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the demo printed no URL of the demo notebook:\n{text[-3000:]}")
            else:
                time.sleep(0.2)
        assert "Running as root is not recommended" not in log.read_text(errors="replace")

        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200
            html = page.read().decode()
        assert "jupyter-config-data" in html  # JupyterLab's page, not an error page

        token = url.rsplit("token=", 1)[1]
        api = f"http://127.0.0.1:{port}/api/contents/demo.ipynb?token={token}"
        with urllib.request.urlopen(api, timeout=10) as answer:
            notebook = json.load(answer)
        assert notebook["type"] == "notebook"
        sources = "".join("".join(cell["source"]) for cell in notebook["content"]["cells"])
        assert "VideoRoom" in sources
    finally:
        os.killpg(demo.pid, signal.SIGTERM)
        try:
            demo.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(10)
