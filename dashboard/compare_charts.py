"""Plotly figures of the Compare page: a line per group of runs with a band of ± one std
over its seeds, and personalization against generalization. Colours come from
``chart_style.group_colors``, so one group has one colour in every chart of the page."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping

import pandas as pd
import plotly.graph_objects as go

from dashboard import chart_style as style


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


def legend_html(colors: Mapping[str, str]) -> str:
    """One legend for a grid of small multiples: a swatch and the label of each group."""
    items = "".join(
        f'<span style="margin-right:1.2em;white-space:nowrap">'
        f'<span style="display:inline-block;width:0.9em;height:0.9em;border-radius:2px;'
        f'background:{color};margin-right:0.35em;vertical-align:-0.1em"></span>'
        f"{html.escape(label)}</span>"
        for label, color in colors.items()
    )
    return f'<div class="compare-legend" style="font-size:0.9rem">{items}</div>'
