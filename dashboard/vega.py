"""Vega-Lite specs as plain dicts: the pieces every chart of the pages shares.

The pages draw their charts with Vega-Lite (``st.vega_lite_chart``) rather than plotly: the
browser's Vega renderer is a fraction of plotly.js (4.6 MB), which only the figure export
still needs. Marks carry their look in the data (colour, dash, shape, size) with
``scale: null``, so what a chart draws can be read back from its spec."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from dashboard import chart_style as style

Spec = dict[str, Any]
# plotly's dash names as Vega stroke dashes (pixels on, off).
DASHES: dict[str, list[float]] = {
    "solid": [],
    "dash": [6, 4],
    "dot": [1.5, 3],
    "dashdot": [6, 3, 1.5, 3],
    "longdash": [10, 4],
}
# plotly's marker symbols as Vega shapes.
SHAPES = {"circle": "circle", "diamond": "diamond", "square": "square", "x": "cross"}
SMALL_PLOT_HEIGHT = style.SMALL_HEIGHT - 90  # the plot area; title and axes sit around it


def title_of(spec: Spec) -> str:
    """A spec's title text ("" when it has none)."""
    title = spec.get("title", "")
    return str(title.get("text", "") if isinstance(title, dict) else title)


def dash(name: str | None) -> list[float]:
    return DASHES.get(name or "solid", [])


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (NaN as null: Vega skips them)."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")


def by_group(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows group by group in the order groups first appear (the page's order of groups,
    which the legend follows), each group by round."""
    order = {label: i for i, label in enumerate(dict.fromkeys(frame["label"]))}
    rank = frame["label"].map(order)
    return (
        frame.assign(_group=rank)
        .sort_values(["_group", "round"], kind="stable")
        .drop(columns="_group")
    )


def direct(field: str, kind: str = "nominal") -> dict[str, Any]:
    """An encoding that draws the field's values as they are (a colour, a dash, a size)."""
    return {"field": field, "type": kind, "scale": None, "legend": None}


def round_axis(rounds: tuple[int, int] | None, values: Iterable[float] = ()) -> dict[str, Any]:
    """The x channel of a curve over rounds: the grid's shared range, a tick per round when
    there are few."""
    x: dict[str, Any] = {"field": "round", "type": "quantitative", "title": "round"}
    if rounds is None:
        seen = [float(v) for v in values]
        rounds = (int(min(seen)), int(max(seen))) if seen else None
    if rounds is not None:
        first, last = rounds
        x["scale"] = {"domain": [first - 0.5, last + 0.5], "nice": False, "zero": False}
        x["axis"] = (
            {"values": list(range(first, last + 1)), "format": "d"}
            if last - first < 12
            else {"tickMinStep": 1, "format": "d"}
        )
    return x


def small(title: str, layers: Sequence[Spec], *, height: int = SMALL_PLOT_HEIGHT) -> Spec:
    """One small multiple: a title and its layers, as wide as its column."""
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": {"text": title, "fontSize": 14, "anchor": "start"},
        "height": height,
        "layer": list(layers),
    }


def legend_spec(entries: Mapping[str, str], *, dashes: Mapping[str, str] | None = None) -> Spec:
    """One legend for a grid of small multiples: each label in its chart colour (and line
    style), drawn by Vega so that no HTML is needed."""
    labels = list(entries)
    # Line styles: a line mark, whose legend draws strokes; else filled squares. The marks
    # are invisible (no data to draw): the legend's symbols must not take their opacity.
    symbol = {"symbolStrokeWidth": 3} if dashes is not None else {"symbolType": "square"}
    spec: Spec = {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "data": {"values": [{"label": label} for label in labels]},
        "mark": {"type": "line" if dashes is not None else "square", "opacity": 0},
        "height": 1,
        "encoding": {
            "color": {
                "field": "label",
                "type": "nominal",
                "scale": {"domain": labels, "range": [entries[label] for label in labels]},
                "legend": {
                    "title": None,
                    "orient": "top",
                    "direction": "horizontal",
                    "labelLimit": 400,
                    "columns": min(len(labels), 4),
                    "symbolOpacity": 1,
                    **symbol,
                },
            }
        },
        "config": {"view": {"stroke": None}, "axis": {"disable": True}},
    }
    if dashes is not None:
        spec["encoding"]["strokeDash"] = {
            "field": "label",
            "type": "nominal",
            "scale": {"domain": labels, "range": [dash(dashes.get(label)) for label in labels]},
            "legend": None,
        }
    return spec
