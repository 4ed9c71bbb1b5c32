"""Charts of the Compare page: a line per group of runs with a band of ± one std over its
seeds, and personalization against generalization. The page draws Vega-Lite specs
(``*_spec``); the plotly figures (``*_figure``) are the same charts for the PNG/SVG export,
built only when it is asked for. Colours come from ``chart_style.group_colors``, so one
group has one colour in every chart of the page."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd
import plotly.graph_objects as go

from dashboard import chart_style as style
from dashboard import vega


def compare_figure(
    curves: pd.DataFrame,
    *,
    metric: str,
    title: str,
    colors: dict[str, str],
    higher_is_better: bool = True,
) -> go.Figure:
    """One client's one task: a line per group (mean over seeds) in a band of ± one std;
    the axis says so when lower is better."""
    figure = go.Figure()
    for label, rows in curves.groupby("label", sort=False):
        rows = rows.sort_values("round")
        color = colors.get(str(label), style.OTHER_COLOR)
        figure.add_trace(style.std_band(rows, color, f"{label} ± std"))
        figure.add_trace(
            go.Scatter(
                x=rows["round"],
                y=rows["mean"],
                name=str(label),
                mode="lines+markers",
                line={"color": color},
                marker={"size": 5},
                customdata=rows[["std", "n"]].to_numpy(),
                hovertemplate=(
                    f"%{{y:.4g}} ± %{{customdata[0]:.2g}} (n=%{{customdata[1]}})<extra>{label}"
                    "</extra>"
                ),
            )
        )
    y_title = metric if higher_is_better else f"{metric} (lower is better)"
    style.small_layout(figure, title=title, y_title=y_title)
    return figure


def tradeoff_figure(points: pd.DataFrame, *, colors: dict[str, str]) -> go.Figure:
    """Personalization (y) against generalization (x): a point per client and task, a
    colour per group; up and to the right is better on both (for accuracy-like metrics)."""
    figure = go.Figure()
    for label, rows in points.groupby("label", sort=False):
        figure.add_trace(
            go.Scatter(
                x=rows["generalization"],
                y=rows["personalization"],
                name=str(label),
                mode="markers",
                marker={
                    "size": 10,
                    "color": colors.get(str(label), style.OTHER_COLOR),
                    "opacity": 0.85,
                },
                text=[
                    f"client {c} · {t}" for c, t in zip(rows["client"], rows["task"], strict=True)
                ],
                hovertemplate=(
                    "%{text}<br>personalization %{y:.4g} · generalization %{x:.4g}"
                    f"<extra>{label}</extra>"
                ),
            )
        )
    metric = str(points["metric"].iloc[0]) if not points.empty else ""
    figure.update_layout(
        height=420,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        xaxis={"title": f"generalization: {metric} on pooled test data"},
        yaxis={"title": f"personalization: {metric} on own test data"},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02},
    )
    return figure


def lower_is_better_note(better: Mapping[str, bool], metrics: Iterable[str]) -> str:
    """`` · lower is better for mse`` when some of ``metrics`` are, else nothing."""
    lower = sorted({str(m) for m in metrics if not better.get(str(m), True)})
    return f" · **lower is better** for {', '.join(lower)}" if lower else ""


def legend_spec(colors: Mapping[str, str]) -> vega.Spec:
    """One legend for a grid of small multiples: the colour and the label of each group."""
    return vega.legend_spec(colors)


def _group_scale(labels: list[str], colors: Mapping[str, str]) -> dict[str, object]:
    return {"domain": labels, "range": [colors.get(label, style.OTHER_COLOR) for label in labels]}


def compare_spec(
    curves: pd.DataFrame,
    *,
    metric: str,
    title: str,
    colors: dict[str, str],
    higher_is_better: bool = True,
    rounds: tuple[int, int] | None = None,
) -> vega.Spec:
    """``compare_figure`` as a Vega-Lite spec: a line per group (mean over seeds) in a band
    of ± one std; the axis says so when lower is better."""
    rows = vega.by_group(curves).assign(
        label=curves["label"].astype(str),
        upper=curves["mean"] + curves["std"].fillna(0),
        lower=curves["mean"] - curves["std"].fillna(0),
    )[["label", "round", "mean", "std", "n", "upper", "lower"]]
    labels = list(dict.fromkeys(str(label) for label in curves["label"]))
    values = vega.records(rows)
    y_title = metric if higher_is_better else f"{metric} (lower is better)"
    x = vega.round_axis(rounds, curves["round"])
    color = {
        "field": "label",
        "type": "nominal",
        "scale": _group_scale(labels, colors),
        "legend": None,
    }
    return vega.small(
        title,
        [
            {
                "data": {"values": values},
                "mark": {"type": "area", "opacity": 0.18},
                "encoding": {
                    "x": x,
                    "y": {
                        "field": "lower",
                        "type": "quantitative",
                        "title": y_title,
                        "scale": {"zero": False},
                    },
                    "y2": {"field": "upper"},
                    "color": color,
                },
            },
            {
                "data": {"values": values},
                "mark": {"type": "line", "point": {"size": 25, "filled": True}},
                "encoding": {
                    "x": x,
                    "y": {"field": "mean", "type": "quantitative", "title": y_title},
                    "color": color,
                    "tooltip": [
                        {"field": "label", "type": "nominal", "title": "group"},
                        {"field": "round", "type": "quantitative"},
                        {"field": "mean", "type": "quantitative", "format": ".4g"},
                        {"field": "std", "type": "quantitative", "format": ".2g"},
                        {"field": "n", "type": "quantitative"},
                    ],
                },
            },
        ],
    )


def tradeoff_spec(points: pd.DataFrame, *, colors: dict[str, str]) -> vega.Spec:
    """``tradeoff_figure`` as a Vega-Lite spec: a point per client and task, a colour per
    group, personalization up and generalization right."""
    metric = str(points["metric"].iloc[0]) if not points.empty else ""
    labels = list(dict.fromkeys(str(label) for label in points["label"]))
    rows = points.assign(
        label=points["label"].astype(str),
        panel=[f"client {c} · {t}" for c, t in zip(points["client"], points["task"], strict=True)],
    )[["label", "panel", "generalization", "personalization"]]
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "data": {"values": vega.records(rows)},
        "mark": {"type": "point", "filled": True, "size": 100, "opacity": 0.85},
        "height": 360,
        "encoding": {
            "x": {
                "field": "generalization",
                "type": "quantitative",
                "title": f"generalization: {metric} on pooled test data",
                "scale": {"zero": False},
            },
            "y": {
                "field": "personalization",
                "type": "quantitative",
                "title": f"personalization: {metric} on own test data",
                "scale": {"zero": False},
            },
            "color": {
                "field": "label",
                "type": "nominal",
                "scale": _group_scale(labels, colors),
                "legend": {"title": None, "orient": "top", "labelLimit": 400},
            },
            "tooltip": [
                {"field": "panel", "type": "nominal", "title": "client · task"},
                {"field": "label", "type": "nominal", "title": "group"},
                {"field": "personalization", "type": "quantitative", "format": ".4g"},
                {"field": "generalization", "type": "quantitative", "format": ".4g"},
            ],
        },
    }
