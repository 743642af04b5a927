"""The tutorial's own browser page, taken from the article at test time (never copied here).

``../shared/seed/tutorial-webrtc-node.md`` prints ``public/index.html`` and ``public/client.js``.
The page is used as published, with one repair: the article's typesetting turned the HTML's
straight quotes into curly ones (``id=”room-input”``), which no browser reads as quotes.
``client.js`` is the article's two listings in order (the second re-declares the first's functions,
which a classic script allows), so the page is exactly what a reader of the article ends up with.
"""

from __future__ import annotations

import re
from pathlib import Path

ARTICLE = Path(__file__).resolve().parents[3] / "shared" / "seed" / "tutorial-webrtc-node.md"


def write_tutorial_page(folder: Path) -> Path:
    """Write the article's ``index.html`` and ``client.js`` into ``folder``; return it."""
    text = ARTICLE.read_text(encoding="utf-8")
    html = re.findall(r"```html\n(.*?)```", text, flags=re.S)
    scripts = [
        block
        for block in re.findall(r"```javascript\n(.*?)```", text, flags=re.S)
        if "socket.on(" in block and "require(" not in block
    ]
    if len(html) != 1 or len(scripts) != 2:
        raise RuntimeError(f"unexpected article layout: {len(html)} html, {len(scripts)} client")
    folder.mkdir(parents=True, exist_ok=True)
    page = html[0].replace("\u201d", '"').replace("\u201c", '"')
    (folder / "index.html").write_text(page, encoding="utf-8")
    (folder / "client.js").write_text("\n".join(scripts), encoding="utf-8")
    return folder
