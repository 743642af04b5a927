"""Running a cell again closes the widgets its previous run made (they would stay in the call)."""

from __future__ import annotations

import pytest

from ipymeet import VideoRoom
from ipymeet.widget import cells


def test_outside_a_kernel_no_cell_is_named() -> None:
    assert cells.current_cell_run() is None


def test_a_cells_next_run_closes_what_its_previous_run_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The frontend names the cell and the execute request (what JupyterLab puts in each execute
    request's metadata): played here, the widgets are real."""
    monkeypatch.setattr(cells, "_runs", {})
    run = ("cell-a", "request-1")
    monkeypatch.setattr(cells, "current_cell_run", lambda: run)
    first, second = VideoRoom("rerun-1"), VideoRoom("rerun-2")  # one run, two widgets
    run = ("cell-b", "request-2")
    elsewhere = VideoRoom("rerun-3")
    run = ("cell-a", "request-3")
    again = VideoRoom("rerun-1")
    try:
        assert (first.comm, second.comm) == (None, None)
        assert elsewhere.comm is not None
        assert again.comm is not None
    finally:
        for room in (first, second, elsewhere, again):
            room.close()
