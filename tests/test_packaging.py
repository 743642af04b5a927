"""A clean checkout builds a wheel that carries the front-end bundle and works once installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pytest

from .support import free_port, wait_http

ROOT = Path(__file__).resolve().parents[1]


def _clean_checkout(target: Path) -> Path:
    """Copy what git would give a fresh clone (tracked and new files, nothing ignored)."""
    files = (
        subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    checkout = _clean_checkout(tmp_path_factory.mktemp("checkout"))
    assert not (checkout / "widget" / "static").exists(), "the bundle must not be in git"
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(checkout)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (built,) = dist.glob("ipymeet-*.whl")
    return built


def test_wheel_contains_the_bundle_and_one_import_package(wheel: Path) -> None:
    """The wheel has ipymeet/{__init__,widget,server} and the built JS, CSS and socket.io client."""
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "ipymeet/__init__.py",
        "ipymeet/widget/room.py",
        "ipymeet/widget/static/widget.js",
        "ipymeet/widget/static/widget.css",
        "ipymeet/widget/static/socket.io.js",
        "ipymeet/server/core/signaller.py",
        "ipymeet/server/core/page.html",
    ):
        assert required in names, f"{required} missing from {wheel.name}"
    bundle = zipfile.ZipFile(wheel).read("ipymeet/widget/static/widget.js").decode()
    assert "mountPage" in bundle
    assert len(bundle) > 10_000
    assert not any(name.startswith(("tests/", "js/", "ipymeet/tests")) for name in names)
    init = zipfile.ZipFile(wheel).read("ipymeet/__init__.py").decode()
    assert "__path__" not in init  # only editable installs point at the source tree


def test_installed_wheel_serves_its_page_and_widget(wheel: Path, tmp_path: Path) -> None:
    """Installed on its own (dependencies from this environment, ipymeet only from the wheel), it
    imports, declares the `ipymeet` command, and `ipymeet serve` serves the standalone page and
    the bundle the widget loads."""
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}  # ahead of any other ipymeet
    probe = (
        "import ipymeet, pathlib; from ipymeet import VideoRoom; "
        "print(pathlib.Path(ipymeet.__file__).parent); print(len(str(VideoRoom._esm)))"
    )
    where, esm = subprocess.run(
        [sys.executable, "-c", probe],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    ).stdout.split()
    assert Path(where) == target / "ipymeet", where
    assert int(esm) > 10_000
    (entry_points,) = target.glob("ipymeet-*.dist-info/entry_points.txt")
    assert "ipymeet = ipymeet.server.cli:main" in entry_points.read_text()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "ipymeet.server.cli", "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        env=env,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 30, server)
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/?room=x").read().decode()
        assert "mountPage" in page
        script = urllib.request.urlopen(f"http://127.0.0.1:{port}/static/widget.js").read()
        assert len(script) > 10_000
        tutorial_client = urllib.request.urlopen(f"http://127.0.0.1:{port}/socket.io/socket.io.js")
        assert b"io" in tutorial_client.read()
    finally:
        server.terminate()
        server.wait(10)
