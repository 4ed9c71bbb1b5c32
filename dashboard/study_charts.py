"""Plotly figures of the Study page: the global model's training loss over rounds (a line
per number of pairs M, in a band of ± one std over seeds), and the rounds to a loss
threshold and the final values against M (a line per algorithm, ± one std as error bars)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from dashboard import chart_style as style
from dashboard.study import pairs_label

HEIGHT = 340
FEW_ROUNDS = 12


def pairs_colors(pairs: list[int | None]) -> dict[str, str]:
    """M label -> colour: a sequential scale, so that more pairs read as darker."""
    labels = [pairs_label(p) for p in pairs]
    if len(labels) == 1:
        return {labels[0]: "#1f77b4"}
    scale = sample_colorscale("Viridis", [0.85 * i / (len(labels) - 1) for i in range(len(labels))])
    return dict(zip(labels, (_hex(c) for c in reversed(scale)), strict=True))


def _hex(rgb: str) -> str:
    red, green, blue = (int(float(x)) for x in rgb[rgb.index("(") + 1 : -1].split(","))
    return f"#{red:02x}{green:02x}{blue:02x}"


def _layout(figure: go.Figure, *, title: str, x_title: str, y_title: str) -> go.Figure:
    figure.update_layout(
        title={"text": title, "font": {"size": 14}},
        height=HEIGHT,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        xaxis={"title": x_title},
        yaxis={"title": y_title},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 1, "xanchor": "right"},
        showlegend=True,  # even for one line: it names the M or the algorithm
    )
    return figure


def loss_figure(curves: pd.DataFrame, *, algorithm: str, colors: dict[str, str]) -> go.Figure:
    """One algorithm's global training loss over rounds: a line per M with its ± std band."""
    figure = go.Figure()
    rows_of = curves[curves["algorithm"] == algorithm]
    for pairs, rows in rows_of.groupby("pairs", sort=True, dropna=False):
        label = pairs_label(None if pd.isna(pairs) else int(pairs))
        color = colors.get(label, style.OTHER_COLOR)
        rows = rows.sort_values("round")
        figure.add_trace(style.std_band(rows, color, f"{label} ± std"))
        figure.add_trace(
            go.Scatter(
                x=rows["round"],
                y=rows["mean"],
                name=label,
                mode="lines+markers",
                line={"color": color},
                marker={"size": 5},
            )
        )
    figure = _layout(
        figure,
        title=f"{algorithm} · global model's training loss",
        x_title="round",
        y_title="training loss (mean ± std over seeds)",
    )
    if rows_of["round"].nunique() <= FEW_ROUNDS:
        figure.update_xaxes(dtick=1)  # whole rounds, not 1.2, 1.4, …
    return figure


def against_pairs_figure(
    frame: pd.DataFrame, *, title: str, y_title: str, colors: dict[str, str]
) -> go.Figure:
    """``mean`` ± ``std`` against M (``pairs``), a line per algorithm."""
    figure = go.Figure()
    for algorithm, rows in frame.dropna(subset=["pairs"]).groupby("algorithm", sort=True):
        rows = rows.sort_values("pairs")
        figure.add_trace(
            go.Scatter(
                x=rows["pairs"].astype(int),
                y=rows["mean"],
                error_y={"type": "data", "array": rows["std"].fillna(0), "visible": True},
                name=str(algorithm),
                mode="lines+markers",
                line={"color": colors.get(str(algorithm), style.OTHER_COLOR)},
                marker={"size": 8},
            )
        )
    figure = _layout(figure, title=title, x_title="modality-task pairs M", y_title=y_title)
    figure.update_xaxes(dtick=1)
    return figure
