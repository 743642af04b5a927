"""The VideoRoom widget (anywidget); its front end is built from ``js/`` into ``static/``."""

from .room import STATES, VideoRoom

__all__ = ["STATES", "VideoRoom"]
