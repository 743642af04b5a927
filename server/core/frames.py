"""Video frames a browser uploads in answer to a kernel's snapshot request.

The kernel asks the browser for a frame with a custom message; the browser sends it back in chunks
on its Socket.IO connection (event ``frame``). The frame then arrives on the signaller's thread,
so a cell that waits for it (``await room.snapshot()``, or a blocking ``room.snapshot_png()``)
gets it even though the kernel is busy running that cell: widget messages from the browser would
only be read after the cell. Only the widget that asked (its connection's client key) may answer,
only once, within the declared size.
"""

from __future__ import annotations

import concurrent.futures
import threading
from dataclasses import dataclass, field
from typing import Any

from .validation import Refused, bad

#: Largest frame accepted: 4K RGBA is 33 MB.
MAX_FRAME_BYTES = 64 * 1024 * 1024
#: Largest chunk: under the Socket.IO message limit with room for the packet around it.
MAX_CHUNK_BYTES = 192 * 1024
FORMATS = frozenset({"rgba", "png"})


@dataclass(frozen=True)
class Frame:
    """One frame: ``data`` is RGBA rows (``format == "rgba"``) or a PNG file (``"png"``)."""

    width: int
    height: int
    format: str
    data: bytes


@dataclass
class _Pending:
    client: str
    future: concurrent.futures.Future[Frame]
    chunks: dict[int, bytes] = field(default_factory=dict)
    count: int = 0
    size: int = 0


class FrameInbox:
    """Pending snapshot requests, keyed by an unguessable request id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}

    def expect(self, request_id: str, client: str) -> concurrent.futures.Future[Frame]:
        """Await a frame for ``request_id`` from a connection of ``client``; any thread."""
        future: concurrent.futures.Future[Frame] = concurrent.futures.Future()
        with self._lock:
            self._pending[request_id] = _Pending(client, future)
        return future

    def cancel(self, request_id: str) -> None:
        with self._lock:
            pending = self._pending.pop(request_id, None)
        if pending is not None:
            pending.future.cancel()

    def _fail_from(self, client: str, request_id: Any, message: str) -> None:
        with self._lock:
            pending = self._pending.get(request_id) if isinstance(request_id, str) else None
            if pending is None or pending.client != client or not client:
                raise Refused("not_expected", "no snapshot was asked of this connection")
            del self._pending[request_id]
        pending.future.set_exception(RuntimeError(message))

    def add_chunk(self, client: str, meta: Any, data: Any) -> None:
        """Take one chunk; the last one completes the frame. Raises :class:`Refused`."""
        if not isinstance(meta, dict):
            raise bad("frame metadata must be an object")
        if "error" in meta:  # the browser could not take the frame
            self._fail_from(client, meta.get("id"), str(meta["error"])[:300])
            return
        request_id, index, count, width, height, kind = _chunk_meta(meta)
        if not isinstance(data, bytes) or len(data) > MAX_CHUNK_BYTES:
            raise bad(f"a frame chunk is binary, at most {MAX_CHUNK_BYTES // 1024} KiB")
        with self._lock:
            pending = self._pending.get(request_id)
            if pending is None or pending.client != client or not client:
                raise Refused("not_expected", "no snapshot was asked of this connection")
            if pending.count not in (0, count) or index in pending.chunks:
                raise bad("frame chunks do not fit together")
            pending.count = count
            pending.size += len(data)
            if pending.size > MAX_FRAME_BYTES:
                del self._pending[request_id]
                pending.future.set_exception(RuntimeError("the frame was too large"))
                raise bad("frame too large")
            pending.chunks[index] = data
            if len(pending.chunks) < count:
                return
            del self._pending[request_id]
        body = b"".join(pending.chunks[i] for i in range(count))
        if kind == "rgba" and len(body) != width * height * 4:
            pending.future.set_exception(RuntimeError("the frame's size does not match its data"))
            return
        if not pending.future.done():
            pending.future.set_result(Frame(width, height, kind, body))


def _chunk_meta(meta: dict[str, Any]) -> tuple[str, int, int, int, int, str]:
    """``(id, index, count, width, height, format)`` of a chunk, checked."""

    def integer(key: str, low: int, high: int) -> int:
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise bad(f"frame {key} must be an integer from {low} to {high}")
        return value

    request_id, kind = meta.get("id"), meta.get("format")
    # isinstance first: an unhashable format (a list, an object) would make `in` raise.
    if not isinstance(request_id, str) or not isinstance(kind, str) or kind not in FORMATS:
        raise bad("frame id must be a string and format 'rgba' or 'png'")
    count = integer("count", 1, MAX_FRAME_BYTES // 1024)
    return (
        request_id,
        integer("index", 0, count - 1),
        count,
        integer("width", 1, 8192),
        integer("height", 1, 8192),
        str(kind),
    )
