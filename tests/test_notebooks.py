"""Every notebook in notebooks/ runs top to bottom in a real kernel without an error."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


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
