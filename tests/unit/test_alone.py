"""What the view shows while the widget is alone in its room comes from two traits the kernel sets:
``_shared`` (other kernels of this user can join its signaller) and ``_invite_base`` (that
signaller's public URL, without a token)."""

from __future__ import annotations

from ipymeet import VideoRoom, kernel_signaller


def test_the_kernels_signaller_gives_its_public_url_and_whether_it_is_shared() -> None:
    room = VideoRoom("alone-1")
    try:
        server = kernel_signaller()
        assert room._invite_base == server.public_url
        assert room._invite_base.startswith("http://127.0.0.1:")
        assert "token" not in room._invite_base
        assert room._shared is bool(getattr(server, "shared", False))
        assert room.invite_url == f"{room._invite_base}/?room=alone-1"
        assert {"_shared", "_invite_base"} <= set(room.keys)  # synced: the view reads them
    finally:
        room.close()


def test_an_explicit_signaller_is_its_own_base_and_never_shared() -> None:
    room = VideoRoom("alone-2", signaling_url="https://meet.example.org/")
    try:
        assert (room._shared, room._invite_base) == (False, "https://meet.example.org")
    finally:
        room.close()
