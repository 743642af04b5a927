"""The VideoRoom widget (anywidget); its front end is built from ``js/`` into ``static/``."""

from .contract import CallState, ErrorCode
from .room import STATES, VideoRoom

__all__ = ["STATES", "CallState", "ErrorCode", "VideoRoom"]
