"""Fault points: the steps of the shared signaller's hand-over at which a test makes a kernel die.

A host may die at any instant, and whatever the instant, another kernel must host on the same
port within about two seconds (server/kernel/sharing.py). The instants that matter are the steps of
a hand-over, named in :data:`STEPS`; :func:`reached` marks each in the code. The stress test
(tests/e2e/test_failover_stress.py) kills the hosting kernel and, in turn, arms one step, so that
the kernel taking over dies there too, and checks that the last one still takes over in time.

Off unless the environment variable ``IPYMEET_TEST_FAULTS`` names a folder when the module is
imported (a test sets it for the kernels it starts; nothing else should). Then a step is armed by
a file of its name in that folder, and the first process to reach an armed step removes the file
(only one removal can succeed) and kills itself there, as SIGKILL would: no ``finally``, no exit
handler, sockets closed by the system.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

#: The steps of a hand-over, in their order.
STEPS = (
    # A kernel about to host holds the runtime file's lock, and listens on nothing yet.
    "locked",
    # It listens on the port, and the runtime file still names the host that ended.
    "listening",
    # It wrote the runtime file, and still holds the lock.
    "written",
    # A host is asked ``kernel_hello`` by a kernel attaching to it, and has not answered.
    "hello",
    # It has checked that kernel's proof in ``kernel_attach``, and taken nothing of it.
    "attach",
    # It has taken half of that kernel's widget keys and room capacities in (the replay).
    "replay",
)

_FOLDER = Path(os.environ["IPYMEET_TEST_FAULTS"]) if os.environ.get("IPYMEET_TEST_FAULTS") else None


def arm(folder: Path, step: str) -> Path:
    """Arm ``step`` for the processes started with ``IPYMEET_TEST_FAULTS=folder`` (tests)."""
    if step not in STEPS:
        raise ValueError(f"no fault point {step!r}; the steps are {', '.join(STEPS)}")
    armed = folder / step
    armed.touch()
    return armed


def reached(step: str) -> None:
    """This process is at ``step`` of a hand-over: die here if a test armed it (else nothing)."""
    if _FOLDER is None:
        return
    try:
        (_FOLDER / step).unlink()
    except OSError:  # not armed, or another process took it
        return
    os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
