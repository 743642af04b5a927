"""server/core/loopthread.py: the one asyncio loop on a daemon thread, its crossings and its
teardown.

Each test owns its LoopThread and stops it; the warnings a badly ended loop leaves ("Task was
destroyed but it is pending!", an unclosed loop's ResourceWarning, a coroutine never awaited)
are collected after a ``gc.collect()`` and must be none.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ipymeet.server.core import loopthread
from ipymeet.server.core.loopthread import LoopClosed, LoopThread

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clean(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail the test if asyncio complains or a warning about a loop or a coroutine is left."""
    caplog.set_level(logging.WARNING)
    gc.collect()  # what earlier tests left (an unclosed aiohttp session, say) is not this one's
    caplog.clear()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        yield
        gc.collect()
    complaints = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert not complaints, complaints
    left = [
        str(w.message) for w in seen if issubclass(w.category, ResourceWarning | RuntimeWarning)
    ]
    assert not left, left


def test_runs_on_a_named_daemon_thread_and_crosses_both_ways(clean: None) -> None:
    loops = LoopThread("ipymeet-test").start()
    try:
        assert loops.running
        assert loops.thread.daemon
        assert loops.thread.name == "ipymeet-test"

        async def where() -> str:
            return threading.current_thread().name

        assert loops.run(where(), 2.0) == "ipymeet-test"
        assert loops.submit(where()).result(2.0) == "ipymeet-test"
        called = threading.Event()
        assert loops.call_soon(lambda: called.set() if loops.inside else None) is True
        assert called.wait(2.0)
        assert not loops.inside
    finally:
        assert loops.stop() is True
    assert loops.loop.is_closed()
    assert not loops.thread.is_alive()
    assert not loops.running


def test_stop_is_idempotent(clean: None) -> None:
    loops = LoopThread("ipymeet-test").start()
    assert loops.stop() is True
    assert loops.stop() is True
    assert loops.stop(0) is True
    with pytest.raises(LoopClosed, match="runs once"):
        loops.start()


def test_stop_before_start_does_nothing_and_makes_no_loop(clean: None) -> None:
    loops = LoopThread("ipymeet-test")
    assert loops.stop() is True
    with pytest.raises(RuntimeError, match="not started"):
        _ = loops.loop


def test_stop_from_inside_ends_the_thread(clean: None) -> None:
    loops = LoopThread("ipymeet-test").start()
    answers: list[bool] = []
    assert loops.call_soon(lambda: answers.append(loops.stop()))
    assert loops.join(5.0), "stop() from the loop's own thread did not end it"
    assert answers == [False]  # it only asked: a thread cannot wait for itself
    assert loops.loop.is_closed()


def test_a_coroutine_left_running_is_cancelled_and_its_finally_runs(clean: None) -> None:
    loops = LoopThread("ipymeet-test").start()
    started, finished = threading.Event(), threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        finally:
            finished.set()

    future = loops.submit(forever())
    assert started.wait(2.0)
    loops.stop()
    assert finished.is_set()
    assert future.cancelled()


def test_tasks_made_while_draining_are_drained_too(clean: None) -> None:
    """A task's finally that starts another task (a goodbye message, say): that one is
    cancelled and finished too, not dropped pending."""
    loops = LoopThread("ipymeet-test").start()
    goodbye = threading.Event()

    async def said() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            goodbye.set()

    async def member() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            asyncio.get_running_loop().create_task(said())

    loops.submit(member())
    loops.run(asyncio.sleep(0), 2.0)
    loops.stop()
    assert goodbye.is_set()


def test_async_generators_are_closed(clean: None) -> None:
    loops = LoopThread("ipymeet-test").start()
    closed = threading.Event()

    async def numbers() -> AsyncIterator[int]:
        try:
            yield 1
            yield 2
        finally:
            closed.set()

    async def first() -> tuple[AsyncIterator[int], int]:
        # Iterated first on the loop, as the loop's own (asyncio's hooks see it there).
        held = numbers()
        return held, await held.__anext__()

    held, one = loops.run(first(), 2.0)
    assert one == 1  # suspended at its first yield, not finished
    loops.stop()
    assert closed.is_set()
    del held


def test_after_stop_nothing_raises_and_nothing_is_left_unawaited(clean: None) -> None:
    """What a widget's finalizer does at kernel shutdown, after the loop closed (issue 18)."""
    loops = LoopThread("ipymeet-test").start()
    loops.stop()

    async def work() -> int:
        return 1

    future = loops.submit(work())
    assert isinstance(future.exception(0), LoopClosed)
    assert loops.call_soon(print, "never") is False
    with pytest.raises(LoopClosed):
        loops.run(work(), 1.0)


def test_run_times_out_and_cancels_its_coroutine(clean: None) -> None:
    loops = LoopThread("ipymeet-test").start()
    cancelled = threading.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    try:
        with pytest.raises(TimeoutError):
            loops.run(slow(), 0.2)
        assert cancelled.wait(2.0)
        assert loops.run(asyncio.sleep(0, "still serving"), 2.0) == "still serving"
    finally:
        loops.stop()


def test_run_from_inside_is_refused_not_a_deadlock(clean: None) -> None:
    loops = LoopThread("ipymeet-test").start()

    async def nested() -> str:
        try:
            loops.run(asyncio.sleep(0), 1.0)
        except RuntimeError as refused:
            return str(refused)
        return "ran"

    try:
        assert "own thread" in loops.run(nested(), 3.0)
    finally:
        loops.stop()


def test_a_task_that_ignores_cancellation_is_named_not_waited_for(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    loops = LoopThread("ipymeet-test", drain=0.3).start()
    entered, release = threading.Event(), threading.Event()

    async def stubborn() -> None:
        entered.set()
        while not release.is_set():
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                continue

    with caplog.at_level(logging.WARNING, logger="ipymeet.server"):
        loops.submit(stubborn())
        assert entered.wait(2.0)
        began = time.monotonic()
        assert loops.stop(5.0) is True
    assert time.monotonic() - began < 2.0
    assert any("did not end within 0.3 s" in r.getMessage() for r in caplog.records)
    assert any("stubborn" in r.getMessage() for r in caplog.records)
    release.set()
    # The closed loop leaves the task pending: asyncio says so when it is collected, which is
    # the point of the warning above; not this test's to hear again.
    with caplog.at_level(logging.CRITICAL, logger="asyncio"):
        gc.collect()


def test_a_blocked_executor_call_does_not_hold_the_stop(
    clean: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A blocking call in the loop's default executor (aiohttp's getaddrinfo, say) is waited for
    at most EXECUTOR_WAIT seconds."""
    monkeypatch.setattr(loopthread, "EXECUTOR_WAIT", 0.3)
    loops = LoopThread("ipymeet-test").start()
    entered, release = threading.Event(), threading.Event()

    def blocking() -> None:
        entered.set()
        release.wait(30)

    async def lookup() -> None:
        await asyncio.get_running_loop().run_in_executor(None, blocking)

    try:
        loops.submit(lookup())
        assert entered.wait(2.0)
        began = time.monotonic()
        assert loops.stop(10.0) is True
        assert time.monotonic() - began < 2.0
    finally:
        release.set()


def test_a_thread_that_cannot_start_is_reported_and_leaves_no_loop_open(
    clean: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    loops = LoopThread("ipymeet-test")

    def refuse() -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(loops.thread, "start", refuse)
    with pytest.raises(LoopClosed, match="could not start its thread: can't start new thread"):
        loops.start()
    assert loops.loop.is_closed()
    assert loops.call_soon(print) is False


class _SlowToStart(LoopThread):
    """A thread whose loop comes up 0.3 s late (a machine under load)."""

    def _main(self) -> None:
        time.sleep(0.3)
        super()._main()


def test_a_loop_that_does_not_come_up_in_time_is_reported(clean: None) -> None:
    loops = _SlowToStart("ipymeet-test")
    with pytest.raises(TimeoutError, match=r"did not start within 0\.1 s"):
        loops.start(timeout=0.1)
    assert loops.join(5.0)
    assert loops.loop.is_closed()
    assert loops.call_soon(print) is False


def test_only_loopthread_makes_or_runs_a_loop() -> None:
    """Every asyncio loop on a thread in server/ and widget/ is a LoopThread: no module of
    theirs makes a loop or runs one forever but server/core/loopthread.py."""
    pattern = re.compile(r"new_event_loop\(|run_forever\(")
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for folder in ("server", "widget")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != ROOT / "server" / "core" / "loopthread.py"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert not found, "a loop made outside server/core/loopthread.py:\n" + "\n".join(found)


def test_new_loop_is_asyncio_s_unless_fast(clean: None) -> None:
    """uvloop only when asked for (ipymeet serve) and installed; without it, asyncio's."""
    uvloop: Any
    try:
        import uvloop
    except ImportError:  # not installed, or hidden (the POSIX-less pass, as on Windows)
        uvloop = None
    for fast, expected in ((False, "asyncio"), (True, "asyncio" if uvloop is None else "uvloop")):
        loop = loopthread.new_loop(fast=fast)
        try:
            assert type(loop).__module__.split(".")[0] == expected
        finally:
            loop.close()
