"""Process-level tuning for the signaller, measured with ``benchmarks/signalling.py``.

python-socketio on aiohttp spends most of a relayed message's CPU in its own machinery, and at
1,000 connections the largest single cost was not any of it but Python's garbage collector. Three
knobs, each with the reason it is here:

- **GC thresholds** (:func:`tune_process`, ``ipymeet serve`` only). Every relayed message allocates
  a few dozen short-lived objects (packets, tasks, futures), so the default threshold of 700
  allocations starts a young collection every few messages, and the older generations, which hold
  every connection's objects, are walked again and again. ``gc.set_threshold(50_000, 50, 100)``
  makes collections rarer; the objects are freed by reference counting anyway (the collector only
  finds cycles). :func:`gc.freeze` moves what exists at start-up (modules, the app) out of the
  collector's sight. This changes the whole process's collector, so it is applied only in the
  process ``ipymeet serve`` owns, never in a kernel that hosts the signaller on a thread.
- **Open-file limit** (:func:`tune_process`): raised to the hard limit, since every connection is a
  file descriptor and a soft limit of 1,024 would cap the clients (Node's users raise it by hand).
- **uvloop** (``loopthread.new_loop(fast=True)``, ``ipymeet serve`` only), when installed: a
  faster event loop and transports. A kernel's loop is the kernel's choice.
- **orjson** (:func:`json_module`, any signaller), when installed: encodes outgoing packets about
  four times faster than :mod:`json` (an SDP is 3-6 KB). python-socketio sets the module on its
  packet classes, so it applies to every python-socketio user in the process, and so it must be
  a drop-in: its output parses to exactly what :mod:`json` would have written. Whatever orjson
  refuses (integers beyond 64 bits, lone surrogates, keys that are not strings) and any output
  with a ``null`` in it (orjson writes NaN and the infinities as ``null``; Python writes
  ``NaN``, which a dialect-1 relay passes on whole) is encoded by :mod:`json` instead.
  Decoding stays with :mod:`json`, through one reused decoder with engineio's rule for integers
  (at most 100 digits, as ``engineio.json`` has it; that module builds a new decoder per message):
  orjson would read integers beyond 64 bits as floats, and would save only about 1 µs a message.

Without uvloop and orjson (``pip install ipymeet[serve]`` brings them) everything still works.
"""

from __future__ import annotations

import contextlib
import gc
import json
from typing import Any

#: Young-generation threshold and the two older ones (CPython's default: 700, 10, 10).
GC_THRESHOLDS = (50_000, 50, 100)

#: Digits an integer in a client's JSON may have (python-engineio's limit: int() of a long digit
#: string costs time quadratic in its length).
MAX_INT_DIGITS = 100


def _safe_int(text: str) -> int:
    if len(text) > MAX_INT_DIGITS:
        raise ValueError("Integer is too large")
    return int(text)


_decoder = json.JSONDecoder(parse_int=_safe_int)


class _FastJSON:
    """The part of the :mod:`json` interface python-socketio uses: ``dumps`` and ``loads``.

    ``dumps`` gives text that parses to exactly what :func:`json.dumps` would have given.
    """

    def __init__(self, orjson: Any) -> None:
        self._encode = orjson.dumps
        # Types json itself would refuse or write differently go to json, not to orjson.
        self._option = (
            orjson.OPT_PASSTHROUGH_DATACLASS
            | orjson.OPT_PASSTHROUGH_DATETIME
            | orjson.OPT_PASSTHROUGH_SUBCLASS
        )

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        try:
            encoded: bytes = self._encode(obj, option=self._option)
        except TypeError:  # integers beyond 64 bits, lone surrogates, non-string keys, ...
            return json.dumps(obj, **kwargs)
        if b"null" in encoded:  # perhaps a NaN or an infinity, which orjson writes as null
            return json.dumps(obj, **kwargs)
        return encoded.decode()

    @staticmethod
    def loads(text: str | bytes, **kwargs: Any) -> Any:
        if kwargs or not isinstance(text, str):
            kwargs.setdefault("parse_int", _safe_int)
            return json.loads(text, **kwargs)
        return _decoder.decode(text)


def json_module() -> Any:
    """A ``json``-like module for ``socketio.AsyncServer(json=...)``, or None for its default."""
    try:
        import orjson
    except ImportError:
        return None
    return _FastJSON(orjson)


def tune_process() -> None:
    """GC thresholds and the open-file limit. Only for a process of the signaller's own."""
    gc.set_threshold(*GC_THRESHOLDS)
    gc.freeze()
    # Each connection is a file descriptor; a soft limit of 1,024 (common) caps the clients.
    try:
        import resource  # not on Windows
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
