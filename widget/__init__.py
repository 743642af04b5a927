"""The VideoRoom widget (anywidget); its front end is built from ``js/`` into ``static/``.

``KernelPeer`` (kernelpeer.py) is Python as a member of a call; it imports aiortc only when made.
"""

from .contract import CallState, ErrorCode
from .kernelpeer import KernelPeer
from .room import STATES, VideoRoom

__all__ = ["STATES", "CallState", "ErrorCode", "KernelPeer", "VideoRoom"]
