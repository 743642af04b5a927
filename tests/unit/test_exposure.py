"""Safe by default: loopback unless told; a plain warning when exposed; the secret never shown."""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from ipymeet.server import Settings, SignallerThread
from ipymeet.server.kernel.runner import exposure_warning

from ..support import free_port


def test_loopback_by_default_and_silent() -> None:
    assert Settings().host == "127.0.0.1"
    assert not Settings().exposed
    assert exposure_warning(Settings(host="localhost"), "http://localhost:1") is None
    assert exposure_warning(Settings(host="::1"), "http://[::1]:1") is None


def test_the_warning_says_what_is_exposed_and_whether_tokens_and_tls_are_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    open_lan = exposure_warning(Settings(host="0.0.0.0"), "http://192.168.1.5:8765")
    assert open_lan is not None
    for words in (
        "listens on 0.0.0.0:8765",
        "anyone who can reach that address",
        "signalling server",
        "standalone call page at http://192.168.1.5:8765/",
        "Join tokens: OFF",
        "TLS: OFF",
    ):
        assert words in open_lan, (words, open_lan)
    guarded = exposure_warning(
        Settings(host="192.168.1.5", secret=b"x" * 32, tls="self-signed"), "https://h:1"
    )
    assert guarded is not None
    assert "Join tokens: required" in guarded
    assert "TLS: on" in guarded
    # The thread logs it when it starts.
    with caplog.at_level(logging.WARNING, logger="ipymeet.server"):
        server = SignallerThread(Settings(host="0.0.0.0", ice_servers=())).start()
        server.stop()
    assert any("anyone who can reach" in r.getMessage() for r in caplog.records)


def test_behind_the_hub_the_warning_names_the_hubs_login_not_join_tokens() -> None:
    warning = exposure_warning(
        Settings(host="0.0.0.0"), "http://192.168.1.5:10101", hub_prefix="/services/ipymeet/"
    )
    assert warning is not None
    for words in (
        "JupyterHub service listens on 0.0.0.0:10101",
        "the hub's login guards it",
        "page (http://192.168.1.5:10101/services/ipymeet/) needs a hub login",
        "a user's kernel's hub token",
        "join tokens do not apply",
        "TLS: OFF on this address",
        "docs/deploy.md, JupyterHub",
    ):
        assert words in warning, (words, warning)
    assert "Join tokens: OFF" not in warning
    assert "guesses a room name" not in warning
    assert exposure_warning(Settings(), "http://127.0.0.1:1", hub_prefix="/s/") is None


def test_ipymeet_serve_jupyterhub_on_all_interfaces_prints_what_guards_it() -> None:
    """The command itself, as the hub would start it (its hub need not answer to start)."""
    port = free_port()
    env = {
        **os.environ,
        "JUPYTERHUB_API_URL": f"http://127.0.0.1:{free_port()}/hub/api",
        "JUPYTERHUB_API_TOKEN": "service-token-0123456789",
        "JUPYTERHUB_SERVICE_NAME": "ipymeet",
        "JUPYTERHUB_SERVICE_PREFIX": "/services/ipymeet/",
    }
    command = [sys.executable, "-m", "ipymeet.server.cli", "serve", "--jupyterhub"]
    command += ["--host", "0.0.0.0", "--port", str(port), "--invite", "class"]
    serve = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: queue.Queue[str] = queue.Queue()
    assert serve.stdout is not None

    def read(stream: IO[str]) -> None:
        for line in stream:
            lines.put(line)

    reader = threading.Thread(target=read, args=(serve.stdout,))
    reader.start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while not all(any(text in line for line in seen) for text in ("listens on", "Invite")):
            assert serve.poll() is None, seen
            try:
                seen.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                pytest.fail(f"no warning within 30 s: {seen}")
    finally:
        serve.terminate()
        serve.wait(10)
        reader.join(10)
    warning = next(line for line in seen if "listens on" in line)
    assert f"JupyterHub service listens on 0.0.0.0:{port}" in warning
    assert f":{port}/services/ipymeet/) needs a hub login" in warning
    assert "Join tokens: OFF" not in warning
    # The invite is on the hub's address (through its proxy), not the service's own port.
    link = next(line for line in seen if "Invite" in line)
    assert "Invite to class: /services/ipymeet/?room=class on the hub's address" in link


def test_the_secret_is_never_in_a_repr_and_settings_are_checked(tmp_path: Path) -> None:
    secret = b"very-secret-value-0123456789"
    assert secret.decode() not in repr(Settings(secret=secret))
    with pytest.raises(ValueError, match="16 bytes"):
        Settings(secret=b"short")
    with pytest.raises(ValueError, match="no such file"):
        Settings(tls=(tmp_path / "cert.pem", tmp_path / "key.pem"))
    with pytest.raises(ValueError, match="self-signed"):
        Settings(tls="self-made")  # type: ignore[arg-type]
