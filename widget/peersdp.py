"""What a kernel peer adds to the session descriptions it sends, for the video between it and a
browser (pure text functions; peerconn.py applies them to each description it sends):

- :func:`quick_start_sdp`: the bit rate the browser starts its video to this peer at, so the
  peer gets the camera's full size within seconds rather than after ten;
- :func:`playout_delay_sdp`: the playout delay header extension on this peer's own video, which
  it writes as zero (``internals.zero_playout_delay``), so the browser shows each of its frames
  as soon as it is decoded.
"""

from __future__ import annotations

import re

from ..server.core import internals

#: The bit rate (kbps) a browser starts sending this peer video at, told in the peer's session
#: description (Chromium's ``x-google-start-bitrate``; others ignore it). Chromium starts at
#: 300 kbps and, toward aiortc (no transport-wide feedback), climbs about 8 % a second: it sent
#: its camera at a quarter of its size for about 10 s (docs/performance.md).
START_KBPS = 2000

_RTPMAP = re.compile(r"^a=rtpmap:(\d+) (VP8|VP9|H264|AV1)/", re.IGNORECASE)


def quick_start_sdp(sdp: str, kbps: int = START_KBPS) -> str:
    r"""``sdp`` telling the browser to start its video to this peer at ``kbps`` (each video
    codec's ``a=fmtp`` gets ``x-google-start-bitrate``; one is added where it has none).

    Example::

        quick_start_sdp("m=video 9 UDP/TLS/RTP/SAVPF 97\r\na=rtpmap:97 VP8/90000\r\n", 2000)
        # 'm=video 9 UDP/TLS/RTP/SAVPF 97\r\na=rtpmap:97 VP8/90000\r\n'
        # 'a=fmtp:97 x-google-start-bitrate=2000\r\n'
    """
    lines = sdp.splitlines()
    codecs = {m.group(1) for line in lines if (m := _RTPMAP.match(line))}
    fmtp = {_fmtp_pt(line) for line in lines} - {None}
    start = f"x-google-start-bitrate={kbps}"
    out: list[str] = []
    for line in lines:
        if _fmtp_pt(line) in codecs and "x-google-start-bitrate" not in line:
            line = f"{line};{start}"
        out.append(line)
        match = _RTPMAP.match(line)
        if match and match.group(1) not in fmtp:
            out.append(f"a=fmtp:{match.group(1)} {start}")
    return "".join(f"{line}\r\n" for line in out)


def _fmtp_pt(line: str) -> str | None:
    """The payload type an ``a=fmtp:`` line is for (None: another line)."""
    return line.split()[0][len("a=fmtp:") :] if line.startswith("a=fmtp:") else None


def playout_delay_sdp(sdp: str, offer: str | None) -> str:
    r"""``sdp``, this peer's description, with the playout delay header extension
    (``internals.PLAYOUT_DELAY_URI``) in each video section: under the id ``offer`` gave it when
    this is the answer to ``offer`` (and not at all if ``offer`` has none: an answer adds
    nothing), else under the lowest id ``sdp`` does not use. The browser then takes the zero
    delay this peer writes on its video (``internals.zero_playout_delay``).

    Example::

        playout_delay_sdp("m=video 9 UDP/TLS/RTP/SAVPF 97\r\na=extmap:1 urn:x\r\n", None)
        # '...a=extmap:1 urn:x\r\na=extmap:2 http://www.webrtc.org/.../playout-delay\r\n'
    """
    uri = internals.PLAYOUT_DELAY_URI
    if offer is not None:
        ext_id = playout_delay_id(offer)
    else:
        used = {int(m.group(1)) for m in _EXTMAP.finditer(sdp)}
        ext_id = next((i for i in range(1, 15) if i not in used), None)
    if ext_id is None:
        return sdp
    out: list[str] = []
    section: str | None = None
    pending = False  # a video section that still needs the line
    for line in sdp.splitlines():
        if line.startswith("m="):
            if pending:
                out.append(f"a=extmap:{ext_id} {uri}")
            section = line[2:].split(" ", 1)[0]
            pending = section == "video"
        elif pending and (uri in line and line.startswith("a=extmap:")):
            pending = False
        elif pending and line.startswith("a=rtpmap:"):
            out.append(f"a=extmap:{ext_id} {uri}")
            pending = False
        out.append(line)
    if pending:
        out.append(f"a=extmap:{ext_id} {uri}")
    return "".join(f"{line}\r\n" for line in out)


def playout_delay_id(sdp: str | None) -> int | None:
    """The id ``sdp`` gives the playout delay header extension in a video section (None: none)."""
    section = None
    for line in (sdp or "").splitlines():
        if line.startswith("m="):
            section = line[2:].split(" ", 1)[0]
        elif (
            section == "video"
            and (match := _EXTMAP.match(line))
            and line.split()[1] == internals.PLAYOUT_DELAY_URI
        ):
            return int(match.group(1))
    return None


_EXTMAP = re.compile(r"^a=extmap:(\d+)(?:/\w+)? ", re.MULTILINE)
