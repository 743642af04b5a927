"""Running the signaller on a thread of its own: the way a kernel hosts it.

The signaller must keep answering while a notebook cell is busy, so it owns a named daemon thread
with its own asyncio loop. Other threads read its room registry (under the registry's lock) and
stop it through ``run_coroutine_threadsafe``; they never touch its loop's objects directly.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import threading

from aiohttp import web

from .app import SIGNALLER, create_app
from .registry import Registry
from .settings import Settings
from .signaller import Signaller


class SignallerThread:
    """A signaller serving on a background thread.

    Example::

        server = SignallerThread(Settings()).start()
        print(server.url)          # http://127.0.0.1:PORT
        server.stop()              # idempotent
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.app = create_app(self.settings)
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._lock = threading.Lock()

    @property
    def signaller(self) -> Signaller:
        return self.app[SIGNALLER]

    @property
    def registry(self) -> Registry:
        return self.signaller.registry

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:41234``."""
        host = self.settings.host
        shown = "127.0.0.1" if host in ("", "0.0.0.0") else host
        shown = f"[{shown}]" if ":" in shown else shown
        return f"http://{shown}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._ready.is_set()

    def start(self, timeout: float = 15.0) -> SignallerThread:
        """Start serving; returns once the port is bound (raises if it cannot be)."""
        with self._lock:
            if self._thread is not None:
                return self
            self._thread = threading.Thread(
                target=self._main, name="ipymeet-signaller", daemon=True
            )
            self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the signaller did not start within {timeout} s")
        if self._startup_error is not None:
            raise RuntimeError(
                f"the signaller could not listen on {self.settings.host}:{self.settings.port}: "
                f"{self._startup_error}"
            ) from self._startup_error
        return self

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start()'s caller
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        runner = web.AppRunner(
            self.app, handle_signals=False, access_log=None, shutdown_timeout=2.0
        )
        await runner.setup()
        site = web.TCPSite(runner, self.settings.host, self.settings.port, backlog=1024)
        await site.start()
        self._runner = runner
        sockets = runner.addresses
        self.port = int(sockets[0][1])

    def set_max_peers(self, max_peers: int) -> None:
        """Change the capacity of dialect-2 rooms (members already in a room stay)."""
        settings = self.settings.with_(max_peers=max_peers)  # validates
        self.settings = settings
        self.signaller.settings = settings  # one attribute swap: handlers read it per request

    def stop(self, timeout: float = 5.0) -> None:
        """Close every connection and the listening socket, then end the thread. Idempotent."""
        with self._lock:
            thread, loop, runner = self._thread, self._loop, self._runner
            self._runner = None
        if thread is None or loop is None or not thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(self.signaller, runner), loop)
        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            future.result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)

    @staticmethod
    async def _shutdown(signaller: Signaller, runner: web.AppRunner | None) -> None:
        # Clients first: a listening site waits for open WebSockets before it stops.
        await signaller.close()
        if runner is not None:
            await runner.cleanup()
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


_kernel_lock = threading.Lock()
_kernel_signaller: SignallerThread | None = None


def kernel_signaller(settings: Settings | None = None) -> SignallerThread:
    """This process's signaller, started on first use (127.0.0.1, a free port).

    Settings come from ``IPYMEET_*`` environment variables (:meth:`Settings.from_env`) unless given;
    they apply only to the first call, which starts it.
    """
    global _kernel_signaller
    with _kernel_lock:
        if _kernel_signaller is None or not _kernel_signaller.running:
            _kernel_signaller = SignallerThread(settings or Settings.from_env()).start()
            atexit.register(_kernel_signaller.stop)
        return _kernel_signaller
