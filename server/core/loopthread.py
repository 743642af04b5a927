"""An asyncio loop on a named daemon thread of its own: the one way ipymeet runs one.

A kernel's cell may run for minutes, and the signaller (server/kernel/runner.py), the attach
connection (server/kernel/attach.py), the kernel route (widget/relay.py) and a kernel peer's media
(widget/ kernelpeer.py) must go on meanwhile, so each runs on a thread with a loop of its own. They
share this class, and with it one start and one teardown:

- :meth:`LoopThread.start` returns once the loop runs, and raises if the thread cannot be
  started or the loop does not come up in time.
- Other threads cross to the loop only through :meth:`~LoopThread.run` (wait for a coroutine,
  bounded; the coroutine is cancelled when the wait times out), :meth:`~LoopThread.submit` (a
  future) and :meth:`~LoopThread.call_soon` (a callback). Once the loop is stopping, these
  refuse quietly: ``submit`` returns a future failed with :class:`LoopClosed` (and closes the
  coroutine, so no "never awaited" warning), ``call_soon`` returns False. Without that, a
  widget's finalizer at kernel shutdown met "Event loop is closed" (issue 18).
- :meth:`~LoopThread.stop` is idempotent, from any thread, the loop's own included (then it only
  asks: a thread cannot wait for itself). The loop then ends as :func:`asyncio.run` ends one:
  the tasks still pending are cancelled and given :attr:`~LoopThread.drain` seconds to finish
  (their ``finally`` blocks run), async generators are closed, the default executor's threads
  are waited for (bounded too: a blocked ``getaddrinfo`` must not hold a kernel's shutdown), and
  the loop is closed. A task that ignores its cancellation is named in a warning, never waited
  for without end.

The loop is asyncio's default one. uvloop is for ``ipymeet serve``'s process alone
(:func:`new_loop`, server/core/tuning.py): inside a kernel, the kernel's own choice stands.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("ipymeet.server")

T = TypeVar("T")

#: How long a stopping loop's leftover tasks may take to finish once cancelled.
DRAIN = 1.0
#: How long a stopping loop waits for its default executor's threads.
EXECUTOR_WAIT = 1.0


class LoopClosed(RuntimeError):
    """The loop has stopped (or is stopping): nothing more runs on it."""


def new_loop(*, fast: bool = False) -> asyncio.AbstractEventLoop:
    """A new event loop: asyncio's default, or with ``fast`` uvloop's when it is installed
    (``ipymeet serve``'s own process only; a kernel's loop is the kernel's choice)."""
    if fast:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    return asyncio.new_event_loop()


class LoopThread:
    """An asyncio loop running on the daemon thread ``name``.

    Example::

        loops = LoopThread("ipymeet-relay").start()
        answer = loops.run(fetch(), timeout=2.0)   # from any other thread
        loops.call_soon(print, "on the loop")      # False once it has stopped
        loops.stop()                               # idempotent, bounded
    """

    def __init__(self, name: str, *, drain: float = DRAIN) -> None:
        self.name = name
        #: Seconds the leftover tasks of a stopping loop get to finish once cancelled.
        self.drain = drain
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._started = threading.Event()
        #: Whether work is taken: from start until stop is asked (or the loop ended).
        self._open = False
        self._stopped = False
        self._failure: BaseException | None = None

    # -- state (any thread) ------------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop (RuntimeError before :meth:`start`); closed once the thread has ended."""
        if self._loop is None:
            raise RuntimeError(f"{self.name}: not started")
        return self._loop

    @property
    def inside(self) -> bool:
        """Whether the caller runs on this loop's thread."""
        return threading.current_thread() is self.thread

    @property
    def running(self) -> bool:
        """Started, and not stopping nor stopped."""
        with self._lock:
            return self._open

    # -- starting ----------------------------------------------------------------------------------

    def start(self, timeout: float = 5.0) -> LoopThread:
        """Start the thread; returns once its loop runs. Raises RuntimeError if it cannot start
        (no thread to be had, or stopped already), TimeoutError if the loop is not up in
        ``timeout`` seconds. Starting a running one does nothing."""
        with self._lock:
            if self._stopped:
                raise LoopClosed(f"{self.name}: stopped; a LoopThread runs once")
            if self._loop is not None:
                return self
            loop = self._loop = new_loop()
            # Our own executor, so that stopping can wait for its threads with a bound (on 3.11
            # loop.shutdown_default_executor() joins them for as long as they take).
            self._executor = concurrent.futures.ThreadPoolExecutor(
                thread_name_prefix=f"{self.name}-executor"
            )
            loop.set_default_executor(self._executor)
            self._open = True
        try:
            self.thread.start()
        except BaseException as failed:
            with self._lock:
                self._open, self._stopped = False, True
            loop.close()
            raise LoopClosed(f"{self.name}: could not start its thread: {failed}") from failed
        if not self._started.wait(timeout):
            self.stop(0)
            raise TimeoutError(f"{self.name}: its loop did not start within {timeout} s")
        if self._failure is not None:
            raise LoopClosed(f"{self.name}: its loop failed: {self._failure}") from self._failure
        return self

    # -- crossing to the loop (any thread) ---------------------------------------------------------

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the loop; its future. Once the loop is stopping, the coroutine is
        closed unrun and the future fails with :class:`LoopClosed`."""
        with self._lock:
            if self._open and self._loop is not None:
                return asyncio.run_coroutine_threadsafe(coro, self._loop)
        coro.close()
        refused: concurrent.futures.Future[T] = concurrent.futures.Future()
        refused.set_exception(LoopClosed(f"{self.name}: the loop has stopped"))
        return refused

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` on the loop and wait for its result, at most ``timeout`` seconds
        (TimeoutError, and the coroutine is cancelled). Not from the loop's own thread."""
        if self.inside:
            coro.close()
            raise RuntimeError(f"{self.name}: run() from the loop's own thread would wait forever")
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:  # not the builtin TimeoutError on 3.10
            future.cancel()
            raise TimeoutError(f"{self.name}: no answer within {timeout} s") from None

    def call_soon(self, callback: Callable[..., Any], *args: Any) -> bool:
        """Call ``callback(*args)`` on the loop, in the order called; False (and dropped) once
        the loop is stopping."""
        with self._lock:
            if not (self._open and self._loop is not None):
                return False
            self._loop.call_soon_threadsafe(callback, *args)
            return True

    # -- stopping ----------------------------------------------------------------------------------

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop the loop and end the thread (see the module's docstring); whether it has ended.

        Idempotent. From the loop's own thread it only asks (the loop stops once the running
        callback returns) and returns False.
        """
        with self._lock:
            loop, asked = self._loop, self._open
            self._open, self._stopped = False, True
            if asked and loop is not None:
                # Under the lock: the thread closes the loop only after taking it.
                loop.call_soon_threadsafe(loop.stop)
        if loop is None or self.inside:
            return loop is None
        return self.join(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end without asking it to; whether it has."""
        if self.thread.is_alive() and not self.inside:
            self.thread.join(timeout)
        return not self.thread.is_alive()

    # -- the thread --------------------------------------------------------------------------------

    def _main(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.call_soon(self._started.set)
            loop.run_forever()
        except BaseException as failed:  # reported by start(), or here once it has returned
            self._failure = failed
            if self._started.is_set():
                log.error("ipymeet: %s: its loop failed: %r", self.name, failed)
        finally:
            with self._lock:
                self._open, self._stopped = False, True
            try:
                self._finish(loop)
            finally:
                with self._lock:
                    loop.close()
                asyncio.set_event_loop(None)
                self._started.set()

    def _finish(self, loop: asyncio.AbstractEventLoop) -> None:
        """What asyncio.run does after its main coroutine, each step bounded."""
        deadline = time.monotonic() + self.drain
        while True:
            pending = asyncio.all_tasks(loop)
            left = deadline - time.monotonic()
            if not pending or left <= 0:
                break
            for task in pending:
                task.cancel()
            # Tasks made by others' finally blocks are found on the next round.
            loop.run_until_complete(asyncio.wait(pending, timeout=left))
        if pending:
            log.warning(
                "ipymeet: %s: %d task(s) did not end within %g s of being cancelled: %s",
                self.name,
                len(pending),
                self.drain,
                ", ".join(sorted(str(task.get_coro()) for task in pending))[:300],
            )
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        except Exception as failed:
            log.warning("ipymeet: %s: closing async generators failed: %s", self.name, failed)
        self._end_executor()

    def _end_executor(self) -> None:
        executor = self._executor
        if executor is None:
            return
        executor.shutdown(wait=False, cancel_futures=True)
        # Waiting for its threads, bounded: on a thread of its own, given up after the bound.
        waiter = threading.Thread(
            target=executor.shutdown, name=f"{self.name}-executor-end", daemon=True
        )
        waiter.start()
        waiter.join(EXECUTOR_WAIT)
        if waiter.is_alive():
            log.warning(
                "ipymeet: %s: a blocking call in its executor did not end within %g s; left "
                "to end on its own",
                self.name,
                EXECUTOR_WAIT,
            )
