"""Running a cell again closes the widgets its previous run made.

Re-running a cell makes new widgets, but the old ones live on in ipywidgets' registry, still in
their rooms with the camera on (and, in a room of two, taking the new widget's place). So the
widgets a cell made are closed when that cell runs again. JupyterLab and Notebook 7 name the cell in
each execute request's metadata; elsewhere nothing is replaced.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, Protocol


class Closable(Protocol):
    def close(self) -> None: ...


# cell id -> (the execute request that last ran it, the widgets that run made)
_runs: dict[str, tuple[str, list[weakref.ref[Closable]]]] = {}
_lock = threading.Lock()


def current_cell_run() -> tuple[str, str] | None:
    """(cell id, execute request id) of the cell being run, when the frontend says."""
    try:
        from IPython.core.getipython import get_ipython

        shell: Any = get_ipython()
        parent = shell.kernel.get_parent()
    except Exception:  # not in a kernel, or an ipykernel without get_parent
        return None
    cell = (parent.get("metadata") or {}).get("cellId")
    request = (parent.get("header") or {}).get("msg_id")
    return (str(cell), str(request)) if cell and request else None


def made_by_this_run(widget: Closable) -> None:
    """Note that the running cell made ``widget``; if that cell ran before, close what it made
    then."""
    run = current_cell_run()
    if run is None:
        return
    cell, request = run
    with _lock:
        previous_request, widgets = _runs.get(cell, (request, []))
        stale: list[weakref.ref[Closable]] = []
        if previous_request != request:
            stale, widgets = widgets, []
        _runs[cell] = (request, [*widgets, weakref.ref(widget)])
    for ref in stale:
        old = ref()
        if old is not None:
            old.close()
