"""Every notebook in notebooks/ runs top to bottom without an error: the Jupyter ones in a real
kernel, the marimo app as a script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

FOLDER = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(FOLDER.glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Executed headless (no browser: the calls are only requested), no cell raises."""
    monkeypatch.setenv("IPYMEET_ICE_SERVERS", "[]")  # the kernel inherits it
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors
    outputs = {cell.source: cell.get("outputs", []) for cell in notebook.cells}
    invite = [o for src, outs in outputs.items() if "invite_url" in src for o in outs]
    if invite:
        assert "?room=" in invite[0]["data"]["text/plain"]


def test_there_is_a_demo() -> None:
    assert "demo.ipynb" in [p.name for p in NOTEBOOKS]


def test_the_marimo_app_runs_top_to_bottom(tmp_path: Path) -> None:
    """`python notebooks/marimo_room.py` runs every cell (marimo exits non-zero if one raises);
    tests/e2e/test_marimo.py runs it in `marimo run`."""
    env = {**os.environ, "IPYMEET_ICE_SERVERS": "[]", "JUPYTER_RUNTIME_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(FOLDER / "marimo_room.py")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
