"""Safe by default: loopback unless told; a plain warning when exposed; the secret never shown."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ipymeet.server import Settings, SignallerThread
from ipymeet.server.runner import exposure_warning


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


def test_the_secret_is_never_in_a_repr_and_settings_are_checked(tmp_path: Path) -> None:
    secret = b"very-secret-value-0123456789"
    assert secret.decode() not in repr(Settings(secret=secret))
    with pytest.raises(ValueError, match="16 bytes"):
        Settings(secret=b"short")
    with pytest.raises(ValueError, match="no such file"):
        Settings(tls=(tmp_path / "cert.pem", tmp_path / "key.pem"))
    with pytest.raises(ValueError, match="self-signed"):
        Settings(tls="self-made")  # type: ignore[arg-type]
