"""Reading back the charts a page drew on the server (``dashboard.static_chart``): the SVG
of each, by its key, and what it draws (its text, the colours of its marks)."""

from __future__ import annotations

import base64
import html
import re
import xml.etree.ElementTree as ET
from typing import Any

from streamlit.testing.v1 import AppTest

from dashboard.static_chart import KEY_PREFIX

SVG_URL = "data:image/svg+xml;base64,"
SVG = "{http://www.w3.org/2000/svg}"


def drawings(at: AppTest) -> dict[str, str]:
    """Key -> the SVG text of every chart the page drew on the server, in page order."""
    out: dict[str, str] = {}
    _collect(at._tree, out)
    return out


def _collect(node: Any, out: dict[str, str]) -> None:
    for child in getattr(node, "children", {}).values():
        block_id = str(getattr(getattr(child, "proto", None), "id", ""))
        if type(child).__name__ == "Block" and f"-{KEY_PREFIX}" in block_id:
            key = block_id.split(f"-{KEY_PREFIX}", 1)[1]
            [image] = [c for c in child.children.values() if type(c).__name__ == "Markdown"]
            [source] = re.findall(r"^!\[[^\]]*\]\(([^)]+)\)$", image.value)
            out[key] = svg_of(source)
        else:
            _collect(child, out)


def svg_of(url: str) -> str:
    assert url.startswith(SVG_URL), url[:40]
    return base64.b64decode(url[len(SVG_URL) :]).decode()


def texts(svg: str) -> list[str]:
    """Every text the drawing writes (axis titles and labels, legend entries), in order."""
    return [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]


def mark_fills(svg: str, mark: str = "rect") -> set[str]:
    """The fill colours of every ``mark`` (Vega's mark type) the drawing draws."""
    root = ET.fromstring(svg)
    found = set()
    for group in root.iter(f"{SVG}g"):
        if f"mark-{mark}" in (group.get("class") or "").split():
            found |= {p.get("fill") for p in group.iter(f"{SVG}path") if p.get("fill")}
    return {str(colour) for colour in found}
