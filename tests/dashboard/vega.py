"""Reading a Vega-Lite spec back: what a chart of the dashboard draws (its data, the
look its marks get, its titles and legends), so that tests check the chart, not its code."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
from streamlit.testing.v1 import AppTest

from dashboard.vega import title_of

__all__ = ["title_of"]  # tests read a chart's title as the pages write it

Spec = dict[str, Any]


def specs(at: AppTest) -> list[Spec]:
    """Every Vega-Lite chart of the page, in page order, with the data that Streamlit
    sends beside the spec (a chart's top-level values) put back in."""
    out = []
    for chart in at.get("vega_lite_chart"):
        spec = json.loads(chart.proto.spec)
        if "data" not in spec and chart.proto.data.data:
            table = pa.ipc.open_stream(chart.proto.data.data).read_pandas()
            spec["data"] = {"values": table.to_dict("records")}
        out.append(spec)
    return out


def layers(spec: Spec) -> list[Spec]:
    return list(spec.get("layer") or [spec])


def mark_of(layer: Spec) -> str:
    mark = layer.get("mark", "")
    return str(mark.get("type") if isinstance(mark, dict) else mark)


def values(spec: Spec, layer: Spec) -> list[dict[str, Any]]:
    """A layer's data rows: its own, else the chart's; named datasets resolved."""
    data = layer.get("data") or spec.get("data") or {}
    if "values" in data:
        return list(data["values"])
    return list(spec.get("datasets", {}).get(data.get("name"), []))


def drawn(spec: Spec, mark: str) -> list[dict[str, Any]]:
    """One dict per datum of every ``mark`` layer: each encoded channel's field value
    (``scale: null`` draws it as it is), or the mark's own constant for the channel."""
    out = []
    for layer in layers(spec):
        if mark_of(layer) != mark:
            continue
        props = layer["mark"] if isinstance(layer.get("mark"), dict) else {}
        encoding = layer.get("encoding", {})
        for row in values(spec, layer):
            datum = {k: v for k, v in props.items() if k != "type"}
            for channel, enc in encoding.items():
                if isinstance(enc, dict) and "field" in enc:
                    datum[channel] = row.get(enc["field"])
                elif isinstance(enc, dict) and "value" in enc:
                    datum[channel] = enc["value"]
            datum["row"] = row
            out.append(datum)
    return out


def series(spec: Spec, mark: str = "point", key: str = "series") -> dict[str, dict[str, Any]]:
    """Series name -> its x, its y and the look of its first datum, in data order."""
    out: dict[str, dict[str, Any]] = {}
    for datum in drawn(spec, mark):
        name = datum["row"].get(key)
        if name is None:
            continue
        entry = out.setdefault(str(name), {**datum, "x": [], "y": []})
        entry["x"].append(datum.get("x"))
        entry["y"].append(datum.get("y"))
    return out


def scale_colors(spec: Spec) -> dict[str, str]:
    """Label -> colour of every colour scale with an explicit domain in the chart."""
    out: dict[str, str] = {}
    for layer in layers(spec):
        scale = layer.get("encoding", {}).get("color", {}).get("scale") or {}
        if "domain" in scale:
            out.update(zip(scale["domain"], scale["range"], strict=True))
    return out


def axis_title(spec: Spec, channel: str) -> str | None:
    for layer in layers(spec):
        enc = layer.get("encoding", {}).get(channel)
        if isinstance(enc, dict) and enc.get("title"):
            return str(enc["title"])
    return None


def x_domain(spec: Spec) -> tuple[float, float] | None:
    domains = {
        tuple(layer["encoding"]["x"]["scale"]["domain"])
        for layer in layers(spec)
        if "domain" in layer.get("encoding", {}).get("x", {}).get("scale", {})
    }
    assert len(domains) <= 1, domains  # every layer of one chart on one x-range
    return next(iter(domains), None)


def texts(spec: Spec) -> list[str]:
    """What the chart's text marks write (an annotation such as "stage 2")."""
    return [str(d.get("text")) for d in drawn(spec, "text")]
