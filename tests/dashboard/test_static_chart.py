"""Charts drawn on the server (``dashboard.static_chart``): the spec vl-convert draws, the
width a drawing gets, and the Markdown image a page shows, read back by
``tests/dashboard/static_charts.py``."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

from dashboard import static_chart
from tests.dashboard import static_charts

SPEC = {
    "title": {"text": "Client 0 · task [a]", "anchor": "start"},
    "data": {"values": [{"round": 1, "v": 0.5, "s": "tap"}, {"round": 2, "v": 0.7, "s": "tap"}]},
    "mark": {"type": "line", "point": True},
    "height": 100,
    "encoding": {
        "x": {"field": "round", "type": "quantitative"},
        "y": {"field": "v", "type": "quantitative", "title": "accuracy"},
        "color": {"field": "s", "type": "nominal", "scale": {"range": ["#ff7f0e"]}},
    },
}


def test_a_spec_without_a_width_is_drawn_at_the_width_asked_for_and_its_own_height() -> None:
    fitted = static_chart.fitted(SPEC, 400)
    assert fitted["width"] == 400 and fitted["autosize"]["type"] == "fit-x"
    svg = static_chart.svg(json.dumps(fitted))
    assert 'width="400"' in svg.split(">", 1)[0]
    height = int(svg.split('height="', 1)[1].split('"', 1)[0])
    assert height > 100  # the plot's own 100 px, with the title and the axis under it
    assert {"Client 0 · task [a]", "accuracy"} <= set(static_charts.texts(svg))


def test_a_spec_with_its_own_width_or_concatenated_is_drawn_as_it_is() -> None:
    wide = {**SPEC, "width": 250}
    assert static_chart.fitted(wide, 400) is wide
    concat = {"vconcat": [SPEC, SPEC]}
    assert static_chart.fitted(concat, 400) is concat


def test_the_page_shows_a_markdown_image_that_reads_back_as_the_drawing() -> None:
    def page() -> None:
        from dashboard import static_chart
        from tests.dashboard.test_static_chart import SPEC

        static_chart.show(SPEC, key="one", alt="what [it] shows")

    at = AppTest.from_function(page).run()
    assert not at.exception
    [markdown] = at.markdown
    assert markdown.value.startswith("![what it shows](data:image/svg+xml;base64,")
    drawing = static_charts.drawings(at)["one"]
    assert drawing == static_chart.svg(json.dumps(SPEC, sort_keys=True))
    assert "Client 0 · task [a]" in static_charts.texts(drawing)
    assert static_charts.mark_fills(drawing, "symbol") == {"#ff7f0e"}  # the points
