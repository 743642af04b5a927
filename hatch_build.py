"""Hatch build hook: make the fixed top-level layout one import package, ``ipymeet``.

The repository keeps ``widget/`` and ``server/`` at the top (the project's fixed layout), and the
wheel maps them to ``ipymeet/widget`` and ``ipymeet/server`` with ``force-include``. That leaves the
package without an ``__init__.py``, which this hook writes. Hatch refuses path rewrites in editable
installs, so for those the hook writes an ``__init__.py`` whose ``__path__`` is the repository root:
``ipymeet.widget`` and ``ipymeet.server`` then import straight from the source folders.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

INIT = '''"""ipymeet: video calls inside Jupyter. See https://pypi.org/project/ipymeet/."""
{path_line}
from ipymeet.server import Settings, SignallerThread, create_app, kernel_signaller
from ipymeet.widget import CallState, ErrorCode, KernelPeer, VideoRoom

__version__ = "{version}"
__all__ = [
    "CallState",
    "ErrorCode",
    "KernelPeer",
    "Settings",
    "SignallerThread",
    "VideoRoom",
    "create_app",
    "kernel_signaller",
]
'''


class IpymeetBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        root = Path(self.root).resolve()
        editable = version == "editable"
        path_line = f"__path__ = [{str(root)!r}]" if editable else ""
        text = INIT.format(path_line=path_line, version=self.metadata.version)
        out = Path(tempfile.mkdtemp(prefix="ipymeet-build-")) / "__init__.py"
        out.write_text(text, encoding="utf-8")
        key = "force_include_editable" if editable else "force_include"
        build_data.setdefault(key, {})[str(out)] = "ipymeet/__init__.py"
