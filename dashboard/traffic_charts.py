"""Figures of communication cost: a run's MB per direction over rounds, and on Compare each
group's metric against the MB it has sent."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from dashboard import chart_style as style
from dashboard import vega

DIRECTION_LABELS = {"down": "down (server → clients)", "up": "up (clients → server)"}
DIRECTION_COLORS = {"down": "#1f77b4", "up": "#ff7f0e"}


def run_traffic_figure(cumulative: pd.DataFrame) -> go.Figure:
    """Cumulative MB sent down and up after each FL round (``traffic.cumulative``)."""
    figure = go.Figure()
    for direction, rows in cumulative.groupby("direction", sort=True):
        label = DIRECTION_LABELS.get(str(direction), str(direction))
        figure.add_trace(
            go.Scatter(
                x=rows["round"],
                y=rows["cumulative_mb"],
                name=label,
                mode="lines+markers",
                line={"color": DIRECTION_COLORS.get(str(direction))},
                customdata=rows["mb"],
                hovertemplate="%{y:.4g} MB (%{customdata:.4g} this round)<extra>"
                + label
                + "</extra>",
            )
        )
    style.small_layout(figure, title="Communication", y_title="cumulative MB")
    figure.update_layout(showlegend=True, xaxis={"title": "round"})
    return figure


def cost_figure(points: pd.DataFrame, *, metric: str, colors: dict[str, str]) -> go.Figure:
    """Per group, the metric (mean over clients and tasks) against the cumulative MB sent."""
    figure = go.Figure()
    for label, rows in points.groupby("label", sort=False):
        rows = rows.sort_values("round")
        figure.add_trace(
            go.Scatter(
                x=rows["cumulative_mb"],
                y=rows["mean"],
                name=str(label),
                mode="lines+markers",
                line={"color": colors.get(str(label))},
                customdata=rows["round"],
                hovertemplate="round %{customdata}: %{y:.4g} after %{x:.4g} MB<extra>"
                + str(label)
                + "</extra>",
            )
        )
    style.small_layout(figure, title=f"{metric} vs communication", y_title=metric)
    figure.update_layout(showlegend=True, xaxis={"title": "cumulative MB (down + up)"})
    return figure


def cost_spec(points: pd.DataFrame, *, metric: str, colors: dict[str, str]) -> vega.Spec:
    """``cost_figure`` as a Vega-Lite spec: per group, the metric against the MB sent."""
    labels = list(dict.fromkeys(str(label) for label in points["label"]))
    rows = vega.by_group(points).assign(label=points["label"].astype(str))
    return vega.small(
        f"{metric} vs communication",
        [
            {
                "data": {"values": vega.records(rows[["label", "round", "cumulative_mb", "mean"]])},
                "mark": {"type": "line", "point": {"filled": True, "size": 30}},
                "encoding": {
                    "x": {
                        "field": "cumulative_mb",
                        "type": "quantitative",
                        "title": "cumulative MB (down + up)",
                    },
                    "y": {
                        "field": "mean",
                        "type": "quantitative",
                        "title": metric,
                        "scale": {"zero": False},
                    },
                    "order": {"field": "round", "type": "quantitative"},
                    "color": {
                        "field": "label",
                        "type": "nominal",
                        "scale": {
                            "domain": labels,
                            "range": [colors.get(label, style.OTHER_COLOR) for label in labels],
                        },
                        "legend": {"title": None, "orient": "top", "labelLimit": 400},
                    },
                    "tooltip": [
                        {"field": "label", "type": "nominal", "title": "group"},
                        {"field": "round", "type": "quantitative"},
                        {"field": "cumulative_mb", "type": "quantitative", "format": ".4g"},
                        {"field": "mean", "type": "quantitative", "format": ".4g"},
                    ],
                },
            }
        ],
    )
