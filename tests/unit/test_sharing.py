"""The shared signaller's parts that need no network: the runtime file (private, atomic, refused
when it is not the user's own) and its lock (server/kernel/runtime.py), the proofs of the handshake
(server/kernel/kernels.py), the host's state on the wire (server/kernel/attach.py), the user's port,
and when sharing is on (server/kernel/sharing.py)."""

from __future__ import annotations

import gc
import getpass
import hmac
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ipymeet.server import Settings, SignallerThread, choose
from ipymeet.server.core.frames import FrameInbox
from ipymeet.server.core.settings import port_from_env, share_from_env
from ipymeet.server.kernel import kernels, runner, runtime, sharing
from ipymeet.server.kernel.attach import Attachment, HostState, Loop
from ipymeet.server.kernel.kernels import proof, proof_matches
from ipymeet.server.kernel.runtime import (
    LOCK_FILE,
    RUNTIME_FILE,
    RuntimeInfo,
    read_runtime,
    remove_runtime,
    runtime_lock,
    user_port,
    write_runtime,
)
from ipymeet.server.kernel.sharing import KernelSignaller

from ..support import free_port, posix_only, wait_until

INFO = RuntimeInfo(24321, os.getpid(), "http://127.0.0.1:24321", bytes(range(32)), "kernel-1")


# -- the runtime file ------------------------------------------------------------------------------


def test_the_runtime_file_holds_what_the_kernels_need_and_not_in_its_repr(tmp_path: Path) -> None:
    path = tmp_path / RUNTIME_FILE
    write_runtime(path, INFO)
    assert read_runtime(path) == INFO
    written = json.loads(path.read_text())
    assert written == {
        "version": 1,
        "port": 24321,
        "pid": os.getpid(),
        "url": "http://127.0.0.1:24321",
        "secret": bytes(range(32)).hex(),
        "kernel": "kernel-1",
    }
    assert bytes(range(32)).hex() not in repr(INFO)


@posix_only("file modes and owners")
def test_the_runtime_file_and_its_lock_are_private_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / RUNTIME_FILE
    before = os.umask(0)
    try:
        write_runtime(path, INFO)
        with runtime_lock(tmp_path):
            assert stat.S_IMODE((tmp_path / LOCK_FILE).stat().st_mode) == 0o600
    finally:
        os.umask(before)
    info = path.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.getuid()
    assert read_runtime(path) == INFO


def test_the_file_is_written_with_jupyters_secure_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """secure_write (jupyter_core) makes the temporary file: mode 0600 here, the user's ACL on
    Windows; a refusal of it (its permissions did not take) leaves nothing behind."""
    import jupyter_core.paths

    opened: list[str] = []
    real = jupyter_core.paths.secure_write

    def spy(name: str, binary: bool = False) -> Any:
        opened.append(name)
        return real(name, binary)

    monkeypatch.setattr(jupyter_core.paths, "secure_write", spy)
    path = tmp_path / RUNTIME_FILE
    write_runtime(path, INFO)
    assert [Path(name).parent for name in opened] == [tmp_path]
    assert Path(opened[0]).name.startswith(f".{RUNTIME_FILE}.")

    def refuse(name: str, binary: bool = False) -> Any:
        raise RuntimeError(f"Permissions assignment failed for secure file: '{name}'.")

    monkeypatch.setattr(jupyter_core.paths, "secure_write", refuse)
    with pytest.raises(RuntimeError, match="Permissions"):
        write_runtime(path, RuntimeInfo(1, 1, "http://127.0.0.1:1", b"z" * 32, "k"))
    assert read_runtime(path) == INFO
    assert [p.name for p in tmp_path.iterdir()] == [RUNTIME_FILE]


def test_the_runtime_file_is_replaced_whole_never_written_in_place(tmp_path: Path) -> None:
    """A reader that opened the old file still reads all of the old one; a new reader reads all
    of the new one; no temporary file is left."""
    path = tmp_path / RUNTIME_FILE
    write_runtime(path, INFO)
    old_inode = path.stat().st_ino
    newer = RuntimeInfo(30001, 1, "https://127.0.0.1:30001", b"n" * 32, "kernel-2")
    with path.open(encoding="utf-8") as reading:
        write_runtime(path, newer)
        assert RuntimeInfo.from_json(reading.read()) == INFO
    assert path.stat().st_ino != old_inode
    assert read_runtime(path) == newer
    assert [p.name for p in tmp_path.iterdir()] == [RUNTIME_FILE]


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(
            lambda p: p.chmod(0o644), id="others-may-read", marks=posix_only("file modes")
        ),
        pytest.param(
            lambda p: p.chmod(0o620), id="group-may-write", marks=posix_only("file modes")
        ),
        pytest.param(lambda p: p.write_text("{not json"), id="garbage"),
        pytest.param(lambda p: p.write_text(json.dumps({"version": 2})), id="other-version"),
        pytest.param(
            lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "secret": "ab"})),
            id="short-secret",
        ),
        pytest.param(
            lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "port": "80"})),
            id="port-as-text",
        ),
        pytest.param(lambda p: p.write_bytes(b"\xff\xfe"), id="not-utf8"),
    ],
)
def test_a_runtime_file_that_is_not_the_users_own_or_not_ours_is_ignored(
    tmp_path: Path, spoil: Any
) -> None:
    path = tmp_path / RUNTIME_FILE
    write_runtime(path, INFO)
    spoil(path)
    assert read_runtime(path) is None


def test_a_symlink_or_a_missing_file_is_no_runtime_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "elsewhere.json"
    write_runtime(target, INFO)
    link = tmp_path / RUNTIME_FILE
    link.symlink_to(target)
    assert read_runtime(link) is None
    assert read_runtime(tmp_path / "missing.json") is None
    # Without O_NOFOLLOW (Windows), the link is opened, and refused all the same.
    monkeypatch.delattr(os, "O_NOFOLLOW", raising=False)
    assert read_runtime(link) is None
    assert read_runtime(target) == INFO


def test_without_posix_the_file_is_trusted_for_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where there is no uid (Windows), a file's mode bits say nothing of who may read it (its
    ACL does): read_runtime takes a regular file in the user's runtime folder whatever its
    mode, and still no link or directory."""
    path = tmp_path / RUNTIME_FILE
    write_runtime(path, INFO)
    path.chmod(0o644)
    monkeypatch.delattr(os, "getuid", raising=False)
    assert not runtime.posix()
    assert read_runtime(path) == INFO
    (tmp_path / "folder").mkdir()
    assert read_runtime(tmp_path / "folder") is None


def test_a_rename_refused_for_a_moment_is_tried_again_without_posix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows refuses to rename over a file another process has open (a virus scanner): the
    writer tries again; on POSIX a PermissionError is one at once."""
    path = tmp_path / RUNTIME_FILE
    write_runtime(path, INFO)
    real, refusals = Path.replace, [PermissionError(13, "in use"), PermissionError(13, "in use")]

    def busy(self: Path, target: Any) -> Path:
        if refusals:
            raise refusals.pop()
        return real(self, target)

    monkeypatch.setattr(Path, "replace", busy)
    newer = RuntimeInfo(30001, 1, "https://127.0.0.1:30001", b"n" * 32, "kernel-2")
    if runtime.posix():
        with pytest.raises(PermissionError):
            write_runtime(path, newer)
        assert read_runtime(path) == INFO
        monkeypatch.delattr(os, "getuid")
    write_runtime(path, newer)
    assert not refusals
    assert read_runtime(path) == newer
    assert [p.name for p in tmp_path.iterdir()] == [RUNTIME_FILE]


def test_the_host_removes_the_file_only_while_it_is_its_own(tmp_path: Path) -> None:
    path = tmp_path / RUNTIME_FILE
    write_runtime(path, INFO)
    assert remove_runtime(path, "another-kernel") is False
    assert path.exists()
    assert remove_runtime(path, "kernel-1") is True
    assert not path.exists()
    assert remove_runtime(path, "kernel-1") is False


def test_the_lock_is_one_holder_at_a_time(tmp_path: Path) -> None:
    with runtime_lock(tmp_path):
        # Another open file description (as another process has) waits, then gives up.
        with pytest.raises(TimeoutError), runtime_lock(tmp_path, timeout=0.05):
            pass
        with pytest.raises(TimeoutError), runtime_lock(tmp_path, cancelled=lambda: True):
            pass
    with runtime_lock(tmp_path, timeout=0.05):  # let go on the way out
        pass


def test_the_lock_excludes_another_thread_until_let_go(tmp_path: Path) -> None:
    """Two "kernels" in one process (the tests', a failover thread) take turns too."""
    held, release, order = threading.Event(), threading.Event(), []

    def holder() -> None:
        with runtime_lock(tmp_path):
            order.append("holder in")
            held.set()
            release.wait(10)
            order.append("holder out")

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(10)
        with pytest.raises(TimeoutError), runtime_lock(tmp_path, timeout=0.1):
            pass
        threading.Timer(0.2, release.set).start()
        with runtime_lock(tmp_path, timeout=10):
            order.append("waiter in")
    finally:
        release.set()
        thread.join(10)
    assert order == ["holder in", "holder out", "waiter in"]


LOCK_HOLDER = """
import sys, time
from pathlib import Path
from ipymeet.server.kernel.runtime import runtime_lock
with runtime_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_killed_holders_lock_is_let_go_at_once(tmp_path: Path) -> None:
    """Another process holds the lock; killed (SIGKILL; TerminateProcess on Windows) it never
    let go itself, and the system did: the next one takes it at once, the file left in place."""
    child = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "held\n"
        with pytest.raises(TimeoutError), runtime_lock(tmp_path, timeout=0.2):
            pass
        child.kill()
        child.wait(10)
        started = time.monotonic()
        with runtime_lock(tmp_path, timeout=5):
            took = time.monotonic() - started
    finally:
        child.kill()
        child.wait(10)
    assert took < 0.5
    assert (tmp_path / LOCK_FILE).exists()


def test_the_lock_is_filelocks_os_lock_not_a_soft_one() -> None:
    """Where flock or LockFileEx exists filelock takes it: a SoftFileLock (a file that says
    "taken") would outlive a killed holder."""
    import filelock

    assert filelock.FileLock in (filelock.UnixFileLock, filelock.WindowsFileLock)


# -- the handshake's proofs ------------------------------------------------------------------------


def test_a_proof_holds_only_for_its_secret_role_port_and_challenge() -> None:
    secret, challenge = b"k" * 32, "ab" * 32
    right = proof(secret, "kernel", 24321, challenge)
    assert len(right) == 64
    assert proof_matches(secret, "kernel", 24321, challenge, right)
    assert not proof_matches(b"j" * 32, "kernel", 24321, challenge, right)
    assert not proof_matches(secret, "host", 24321, challenge, right)
    assert not proof_matches(secret, "kernel", 24322, challenge, right)
    assert not proof_matches(secret, "kernel", 24321, "cd" * 32, right)
    assert not proof_matches(secret, "kernel", 24321, challenge, right.upper())
    assert not proof_matches(secret, "kernel", 24321, challenge, right[:-1])
    for junk in (None, 5, b"x", ["a"], "é" * 64, "\udcff" * 64):
        assert not proof_matches(secret, "kernel", 24321, challenge, junk)


def test_proofs_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(kernels.hmac, "compare_digest", spy)
    right = proof(b"k" * 32, "host", 1, "0" * 64)
    assert proof_matches(b"k" * 32, "host", 1, "0" * 64, right)
    assert not proof_matches(b"k" * 32, "host", 1, "0" * 64, "f" * 64)
    assert compared == [(right.encode(), right.encode()), (right.encode(), b"f" * 64)]


# -- the port, and when sharing is on --------------------------------------------------------------


def test_the_users_port_is_derived_from_the_name_below_the_ephemeral_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = [f"user{n}" for n in range(200)]
    ports = [user_port(name) for name in names]
    assert all(20000 <= port <= 31999 for port in ports)
    assert len(set(ports)) > 190  # users of one machine differ
    assert user_port("ada") == user_port("ada") == 28539  # the same on every machine
    monkeypatch.setenv("LOGNAME", "grace")  # getpass.getuser()'s first place to look
    assert user_port() == user_port("grace")

    def nameless() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.setattr(getpass, "getuser", nameless)
    assert user_port() == user_port("")


def test_ipymeet_port_and_share_are_read_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IPYMEET_PORT", raising=False)
    monkeypatch.delenv("IPYMEET_SHARE", raising=False)
    assert (port_from_env(), share_from_env()) == (None, None)
    assert KernelSignaller(Settings())._want_port == user_port()
    monkeypatch.setenv("IPYMEET_PORT", "24321")
    monkeypatch.setenv("IPYMEET_SHARE", "0")
    assert (port_from_env(), share_from_env()) == (24321, False)
    assert KernelSignaller(Settings())._want_port == 24321
    # Only the shared signaller's: with sharing off, each kernel has a port of its own.
    assert Settings.from_env().port == 0
    monkeypatch.setenv("IPYMEET_SHARE", "1")
    assert share_from_env() is True
    for bad in ("-1", "65536", "http", "1.5"):
        monkeypatch.setenv("IPYMEET_PORT", bad)
        with pytest.raises(ValueError, match="IPYMEET_PORT"):
            port_from_env()
    monkeypatch.setenv("IPYMEET_SHARE", "yes")
    with pytest.raises(ValueError, match="IPYMEET_SHARE"):
        share_from_env()


def test_outside_a_kernel_sharing_is_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IPYMEET_SHARE", raising=False)
    assert not runner.in_kernel()
    assert not runner.in_marimo()  # nor a marimo app's cell (tests/e2e/test_marimo.py: in one)
    assert sharing.enabled() is False
    monkeypatch.setenv("IPYMEET_SHARE", "1")
    assert sharing.enabled() is True
    monkeypatch.setenv("IPYMEET_SHARE", "0")
    assert sharing.enabled() is False


@pytest.fixture
def own_kernel_signallers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """kernel_signaller() of this test's own, on a runtime directory and port of its own."""
    monkeypatch.setattr(choose, "_kernel_signaller", None)
    monkeypatch.setattr(choose, "_shared_signaller", None)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("IPYMEET_PORT", str(free_port()))
    monkeypatch.setenv("IPYMEET_ICE_SERVERS", "[]")
    yield
    for made in (choose._kernel_signaller, choose._shared_signaller):
        if made is not None:
            made.stop()


@pytest.mark.usefixtures("own_kernel_signallers")
def test_kernel_signaller_shares_with_ipymeet_share_1_and_not_with_0(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("IPYMEET_SHARE", "1")
    shared = choose.kernel_signaller()
    assert isinstance(shared, KernelSignaller)
    assert choose.kernel_signaller() is shared
    assert (shared.hosting, shared.shared, shared.port) == (True, True, port_from_env())
    assert read_runtime(tmp_path / RUNTIME_FILE) is not None
    monkeypatch.setenv("IPYMEET_SHARE", "0")
    own = choose.kernel_signaller()
    assert isinstance(own, SignallerThread)
    assert (own.hosting, own.shared) == (True, False)
    shared.stop()
    assert read_runtime(tmp_path / RUNTIME_FILE) is None  # a clean exit removes it


@pytest.mark.usefixtures("own_kernel_signallers")
def test_a_kernel_that_cannot_have_the_lock_shows_it_in_the_widget_and_its_cell_returns(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Another kernel holds the lock past the bound (stuck): VideoRoom returns, and its error
    says what happened and what to do; nothing is hosted meanwhile. With the lock let go, the
    next VideoRoom hosts."""
    from ipymeet import VideoRoom

    monkeypatch.setenv("IPYMEET_SHARE", "1")
    monkeypatch.setattr(sharing, "LOCK_TIMEOUT", 0.5)
    with runtime_lock(tmp_path):  # "another kernel", stuck holding it
        started = time.monotonic()
        room = VideoRoom("lab-42")
        waited = time.monotonic() - started
    assert 0.5 <= waited < 5, waited
    assert room.error_code == "signaller_unreachable"
    assert "held the shared signaller's lock" in room.error
    assert "run this cell again" in room.error
    assert read_runtime(tmp_path / RUNTIME_FILE) is None
    room.close()
    again = VideoRoom("lab-42")
    assert again.error_code == ""
    assert read_runtime(tmp_path / RUNTIME_FILE) is not None
    again.close()


# -- the host's state as attached kernels mirror it ------------------------------------------------


def test_the_host_state_goes_over_the_wire_and_back() -> None:
    state = HostState(
        port=24321,
        url="https://127.0.0.1:24321",
        public_url="https://192.0.2.7:24321",
        host="0.0.0.0",
        scheme="https",
        tls="self-signed",
        fingerprint="AB:CD",
        max_peers=4,
        token_secret=b"t" * 32,
    )
    wire = state.to_wire()
    assert wire["requires_tokens"] is True
    assert wire["token_secret"] == (b"t" * 32).hex()
    assert HostState.from_wire(json.loads(json.dumps(wire))) == state
    assert "token_secret" not in repr(state)
    for broken in (
        {**wire, "port": 0},
        {**wire, "max_peers": 1},
        {**wire, "url": 5},
        {**wire, "tls": "yes"},
        {k: v for k, v in wire.items() if k != "token_secret"},
        [],
    ):
        with pytest.raises(ValueError, match="host"):
            HostState.from_wire(broken)


@posix_only("signal 0 and /proc tell a dead or zombie process")
def test_a_killed_host_not_yet_reaped_counts_as_gone() -> None:
    """A zombie (killed, its parent not yet waiting for it) still has its pid, but no socket: a
    kernel taking over must not wait for it."""
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert runtime.pid_alive(child.pid)
        child.kill()
        stat_file = Path(f"/proc/{child.pid}/stat")
        wait_until(
            lambda: stat_file.read_text().rsplit(")", 1)[-1].split()[0] == "Z", 10, "a zombie"
        )
        assert not runtime.pid_alive(child.pid)
    finally:
        child.kill()
        child.wait(5)
    assert not runtime.pid_alive(child.pid)
    assert runtime.pid_alive(os.getpid())


def test_without_posix_any_pid_may_be_alive_and_no_signal_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On Windows ``os.kill(pid, 0)`` is a CTRL_C_EVENT: never sent; the handshake decides."""
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.delattr(os, "getuid", raising=False)
    assert runtime.pid_alive(os.getpid())
    assert runtime.pid_alive(2**22 + 12345)
    assert sent == []


def test_a_host_that_cannot_write_the_file_stops_its_signaller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """secure_write refusing the file's permissions (or a full disk) ends the start, and leaves
    no signaller thread behind (the autouse fixture checks)."""

    def refuse(path: Path, info: RuntimeInfo) -> None:
        raise RuntimeError("Permissions assignment failed for secure file")

    monkeypatch.setattr(sharing, "write_runtime", refuse)
    kernel = KernelSignaller(Settings(ice_servers=()), runtime_dir=tmp_path, port=free_port())
    with pytest.raises(RuntimeError, match="Permissions"):
        kernel.start()
    assert not kernel.running
    assert read_runtime(tmp_path / RUNTIME_FILE) is None


def test_a_key_let_go_after_the_attach_loop_ended_raises_nothing(recwarn: Any) -> None:
    """At kernel shutdown a widget's finalizer unregisters its key after the attach thread's loop
    has closed: nothing is sent (the connection is gone too), and no traceback ("Event loop is
    closed") nor a never-awaited coroutine is left behind."""
    loop = Loop()
    loop.stop()
    assert loop.loop.is_closed()
    info = RuntimeInfo(free_port(), os.getpid(), "http://127.0.0.1:1", b"s" * 32, "k-1")
    attachment = Attachment(
        info,
        loop,
        FrameInbox(),
        on_members=lambda *_: None,
        on_state=lambda *_: None,
        on_lost=lambda *_: None,
    )
    attachment.send("kernel_clients", {"remove": ["gone"]})
    gc.collect()
    assert not [w for w in recwarn if "never awaited" in str(w.message)]


def test_a_takeover_waits_for_the_port_of_the_host_that_ended_and_no_longer() -> None:
    """The port is held (the host that ended still closing): the wait returns once it is let
    go; held for good (a live listener), it gives up at its bound."""
    held = socket.create_server(("127.0.0.1", 0))
    port = held.getsockname()[1]
    threading.Timer(0.3, held.close).start()
    started = time.monotonic()
    assert sharing._wait_for_port("127.0.0.1", port, 5.0)
    assert 0.25 < time.monotonic() - started < 4
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        started = time.monotonic()
        assert not sharing._wait_for_port("127.0.0.1", squatter.getsockname()[1], 0.2)
        assert 0.2 <= time.monotonic() - started < 2
