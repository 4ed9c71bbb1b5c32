"""Vega-Lite charts drawn to SVG on the server and shown as images.

For the charts a page shows first and that need no interaction. On a fresh page load the
browser fetches each kind of element's code only when the element arrives, one round after
another (the sidebar's widgets, then the charts', then Vega's 0.75 MB), and a Vega-Lite
chart is drawn only after all of that has been parsed; the first chart waited about a
second for it. An ``<img>`` in Markdown needs none of it: the Markdown renderer is part of
Streamlit's first bundle, so the image is drawn as soon as it arrives. An SVG in an image
runs no script, whatever text the chart's labels hold.

vl-convert runs the same Vega-Lite compiler and Vega renderer as the browser would, in a
JavaScript engine bundled in the wheel; it needs no browser and no network. The exact values
of such a chart stay on the page in the table beside it.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from typing import Any

import streamlit as st
import vl_convert

VEGA_LITE_VERSION = "5.21"  # the schema the dashboard's specs are written against
# Streamlit's light chart theme, as far as a static drawing needs it.
TEXT = "#31333F"
THEME: dict[str, Any] = {
    "background": "white",
    "font": "'Source Sans Pro', 'Source Sans 3', 'Helvetica Neue', Arial, sans-serif",
    "view": {"stroke": None},
    "title": {"color": TEXT, "fontWeight": 600},
    "axis": {
        "labelColor": TEXT,
        "titleColor": TEXT,
        "titleFontWeight": "normal",
        "labelFontSize": 12,
        "titleFontSize": 12,
        "gridColor": "#e6eaf1",
        "domainColor": "#d5dae5",
        "tickColor": "#d5dae5",
    },
    "legend": {"labelColor": TEXT, "titleColor": TEXT, "labelFontSize": 12, "titleFontSize": 12},
}
KEY_PREFIX = "static_chart_"  # the container's key: what a test or benchmark finds it by
ALT_UNSAFE = re.compile(r"[\[\]\\]")  # what would end the image's alt text


def _start_engine() -> None:
    vl_convert.vegalite_to_svg({"mark": "point"}, vl_version=VEGA_LITE_VERSION)


# Started once per server process, when the first page run imports this module: the first
# drawing then finds vl-convert's engine up, instead of starting it (about 0.5 s) while a
# page waits; the page's own API requests run meanwhile.
threading.Thread(target=_start_engine, name="vl-convert-start", daemon=True).start()


@st.cache_data(max_entries=512, show_spinner=False)
def svg(spec_json: str) -> str:
    """The chart as SVG text; cached by the spec, so a chart is drawn once per server."""
    return vl_convert.vegalite_to_svg(
        json.loads(spec_json), vl_version=VEGA_LITE_VERSION, config=THEME
    )


def fitted(spec: dict[str, Any], width: int) -> dict[str, Any]:
    """``spec`` drawn ``width`` pixels wide, axes and title included, unless it sets its
    own width (the browser would stretch it to its column; a drawing has no column)."""
    if "width" in spec or any(key in spec for key in ("hconcat", "vconcat", "concat")):
        return spec
    return {**spec, "width": width, "autosize": {"type": "fit-x", "contains": "padding"}}


def chart(spec: dict[str, Any], *, interactive: bool, key: str, alt: str, width: int) -> None:
    """``spec`` as a Vega-Lite chart the browser draws (tooltips, as wide as its column),
    or drawn here ``width`` pixels wide."""
    if interactive:
        st.vega_lite_chart(spec, width="stretch")
    else:
        show(fitted(spec, width), key=key, alt=alt)


def show(spec: dict[str, Any], *, key: str, alt: str) -> None:
    """Draws ``spec`` as an image at its own size (narrowed to fit its column), in a
    container keyed ``key``; ``alt`` says what it shows to whoever cannot see it."""
    drawing = svg(json.dumps(spec, sort_keys=True, allow_nan=False))
    source = "data:image/svg+xml;base64," + base64.b64encode(drawing.encode()).decode()
    with st.container(key=f"{KEY_PREFIX}{key}"):
        # Markdown's own image, not HTML: with HTML allowed, the renderer fetches its HTML
        # parser first, one more round before the image shows.
        st.markdown(f"![{ALT_UNSAFE.sub('', alt)}]({source})")
