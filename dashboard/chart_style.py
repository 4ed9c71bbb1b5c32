"""What every chart of the dashboard shares: the layout of a small multiple and the colours.

An algorithm's colour is the catalog's (``GET /catalog``); an algorithm registered without
one gets the next colour of a palette by catalog order, so it is the same on every page and
in every session, and never one that a built-in algorithm has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import plotly.graph_objects as go
from plotly.colors import qualitative

from backend.client.types import CatalogAlgorithm

if TYPE_CHECKING:
    import pandas as pd

OTHER_COLOR = "#7d4cdb"
SMALL_HEIGHT = 260
# Colours for algorithms without one in the catalog, and for a second group of one algorithm.
PALETTE = tuple(c.lower() for c in (*qualitative.Dark24, *qualitative.Light24))


def algorithm_colors(algorithms: Iterable[CatalogAlgorithm]) -> dict[str, str]:
    """Algorithm name -> colour: the catalog's, else the next free palette colour."""
    algorithms = list(algorithms)
    declared = {a["color"].lower() for a in algorithms if a.get("color")}
    spare = iter(spare_colors(declared))
    return {a["name"]: (a.get("color") or next(spare)).lower() for a in algorithms}


def spare_colors(used: Iterable[str]) -> list[str]:
    """The palette without the colours in ``used``, repeated so that it never runs out."""
    taken = {c.lower() for c in used}
    free = [c for c in PALETTE if c not in taken] or list(PALETTE)
    return free * 8


def group_colors(
    labels_algorithms: list[tuple[str, str]], algorithm_colors: Mapping[str, str]
) -> dict[str, str]:
    """A colour per group label: its algorithm's colour for the first group of that
    algorithm, a spare colour for further groups (and for algorithms the catalog lacks)."""
    colors: dict[str, str] = {}
    used: set[str] = set()
    spare = iter(spare_colors(algorithm_colors.values()))
    for label, algorithm in labels_algorithms:
        color = algorithm_colors.get(algorithm)
        if color is None or color in used:
            color = next(spare)
        colors[label] = color
        used.add(color)
    return colors


def rgba(hex_color: str, alpha: float) -> str:
    red, green, blue = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {alpha})"


def small_layout(figure: go.Figure, *, title: str, y_title: str) -> None:
    figure.update_layout(
        title={"text": title, "font": {"size": 14}},
        height=SMALL_HEIGHT,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        showlegend=False,  # the page shows one legend for all small multiples
        hovermode="x unified",
        xaxis={"title": "round", "dtick": 1 if _few_rounds(figure) else None},
        yaxis={"title": y_title},
    )


def _few_rounds(figure: go.Figure) -> bool:
    rounds = {x for trace in figure.data for x in (trace.x if trace.x is not None else ())}
    return len(rounds) <= 12


def std_band(rows: pd.DataFrame, color: str, name: str) -> go.Scatter:
    """The shaded mean ± std band of a curve (``rows``: round, mean, std; sorted by round),
    drawn as one closed polygon under its line."""
    upper = rows["mean"] + rows["std"].fillna(0)
    lower = rows["mean"] - rows["std"].fillna(0)
    return go.Scatter(
        x=list(rows["round"]) + list(rows["round"])[::-1],
        y=list(upper) + list(lower)[::-1],
        fill="toself",
        fillcolor=rgba(color, 0.18),
        line={"width": 0},
        hoverinfo="skip",
        showlegend=False,
        name=name,
    )
