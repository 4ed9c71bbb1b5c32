"""Plotly figures of the Compare page: a line per group of runs with a band of ± one std
over its seeds, and personalization against generalization. Colours come from
``chart_style.group_colors``, so one group has one colour in every chart of the page."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from dashboard import chart_style as style


def compare_figure(
    curves: pd.DataFrame, *, metric: str, title: str, colors: dict[str, str]
) -> go.Figure:
    """One client's one task: a line per group (mean over seeds) in a band of ± one std."""
    figure = go.Figure()
    for label, rows in curves.groupby("label", sort=False):
        rows = rows.sort_values("round")
        color = colors.get(str(label), style.OTHER_COLOR)
        upper = rows["mean"] + rows["std"].fillna(0)
        lower = rows["mean"] - rows["std"].fillna(0)
        figure.add_trace(
            go.Scatter(
                x=list(rows["round"]) + list(rows["round"])[::-1],
                y=list(upper) + list(lower)[::-1],
                fill="toself",
                fillcolor=style.rgba(color, 0.18),
                line={"width": 0},
                hoverinfo="skip",
                showlegend=False,
                name=f"{label} ± std",
            )
        )
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
    style.small_layout(figure, title=title, y_title=metric)
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
