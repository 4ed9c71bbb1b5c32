"""Plotly figures for the run page; pure functions from data frames to figures.

One visual language everywhere: colour says which model (global / global_ft / personal /
final), line
style says which test data — solid for the client's own held-out data (local, i.e.
personalization), dashed for every client's held-out data of that task (pooled, i.e.
generalization), with open markers for pooled values so that a single evaluation
still shows which is which.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

MODEL_ORDER = ("global", "global_ft", "personal", "final")
SPLIT_ORDER = ("local", "pooled")
STAGE_ORDER = ("fl", "post")

MODEL_COLORS = {
    "global": "#1c83e1",
    "global_ft": "#0054a3",  # the global model fine-tuned after FL: a darker global
    "personal": "#ff8700",
    "final": "#21c354",
}
OTHER_COLOR = "#7d4cdb"
SPLIT_DASH = {"local": "solid", "pooled": "dash"}
STAGE_SYMBOL = {"fl": "circle", "post": "diamond"}
TASK_DASHES = ("solid", "dot", "dashdot", "longdash")

SMALL_HEIGHT = 260


def _rank(order: tuple[str, ...], value: str) -> tuple[int, str]:
    # Known values in their natural order, unknown ones after them alphabetically.
    return (order.index(value), "") if value in order else (len(order), value)


def panels(frame: pd.DataFrame) -> list[tuple[int, str]]:
    """The (client, task) pairs to draw one small chart each for, in reading order."""
    if frame.empty:
        return []
    pairs = frame[["client", "task"]].drop_duplicates()
    return sorted((int(c), str(t)) for c, t in pairs.itertuples(index=False))


def trace_name(model: str, split: str, stage: str | None = None) -> str:
    return f"{model} · {split}" + (f" · {stage}" if stage else "")


def metric_figure(frame: pd.DataFrame, *, metric: str, title: str) -> go.Figure:
    """One client's one task: ``metric`` over rounds, a line per model, split (and stage).

    The stage only enters the trace name when a line would otherwise stand for two stages,
    so the usual chart reads "personal · local" rather than "personal · local · fl".
    """
    figure = go.Figure()
    several_stages = _stage_matters(frame, ["model", "split"])
    groups = frame.groupby(["stage", "model", "split"], sort=False)
    keys = sorted(
        groups.groups,
        key=lambda k: (
            _rank(STAGE_ORDER, k[0]),
            _rank(MODEL_ORDER, k[1]),
            _rank(SPLIT_ORDER, k[2]),
        ),
    )
    for stage, model, split in keys:
        rows = groups.get_group((stage, model, split)).sort_values("round")
        name = trace_name(model, split, stage if several_stages else None)
        figure.add_trace(
            go.Scatter(
                x=rows["round"],
                y=rows["value"],
                name=name,
                mode="lines+markers",
                line={"color": MODEL_COLORS.get(model, OTHER_COLOR), "dash": SPLIT_DASH.get(split)},
                marker={"symbol": _symbol(stage, split), "size": 7},
                hovertemplate=f"%{{y:.4g}}<extra>{name}</extra>",
            )
        )
    _small_layout(figure, title=title, y_title=metric)
    return figure


def loss_figure(frame: pd.DataFrame, *, title: str) -> go.Figure:
    """One client's mean local-training loss over rounds: colour = model, dash = task."""
    figure = go.Figure()
    tasks = sorted(frame["task"].unique())
    several_stages = _stage_matters(frame, ["model", "task"])
    groups = frame.groupby(["stage", "model", "task"], sort=False)
    keys = sorted(
        groups.groups, key=lambda k: (_rank(STAGE_ORDER, k[0]), _rank(MODEL_ORDER, k[1]), k[2])
    )
    for stage, model, task in keys:
        rows = groups.get_group((stage, model, task)).sort_values("round")
        name = f"{model} · {task}" + (f" · {stage}" if several_stages else "")
        dash = TASK_DASHES[tasks.index(task) % len(TASK_DASHES)]
        figure.add_trace(
            go.Scatter(
                x=rows["round"],
                y=rows["loss"],
                name=name,
                mode="lines+markers",
                line={"color": MODEL_COLORS.get(model, OTHER_COLOR), "dash": dash},
                marker={"symbol": STAGE_SYMBOL.get(stage, "square"), "size": 5},
                hovertemplate=f"%{{y:.4g}}<extra>{name}</extra>",
            )
        )
    _small_layout(figure, title=title, y_title="training loss")
    # Task names are long; a legend is the only place they fit.
    figure.update_layout(
        showlegend=True,
        legend={"orientation": "h", "yanchor": "top", "y": -0.12, "font": {"size": 10}},
        xaxis={"title": None},  # the legend sits where the axis title would; x is the round
        height=SMALL_HEIGHT + 40,
    )
    return figure


def _symbol(stage: str, split: str) -> str:
    # Open markers for pooled data: tells the splits apart where a line has one point.
    return STAGE_SYMBOL.get(stage, "square") + ("-open" if split == "pooled" else "")


def _stage_matters(frame: pd.DataFrame, keys: list[str]) -> bool:
    """True when some line (e.g. one model on one split) has values in several stages."""
    return not frame.empty and bool(frame.groupby(keys)["stage"].nunique().max() > 1)


def _small_layout(figure: go.Figure, *, title: str, y_title: str) -> None:
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


def latest_values(frame: pd.DataFrame) -> pd.DataFrame:
    """The last evaluated value per client, task, model and split, as one row per panel.

    Columns are ``model · split`` so a reader compares personalization (local) and
    generalization (pooled) of each model side by side.
    """
    if frame.empty:
        return pd.DataFrame()
    keys = ["client", "task", "metric", "model", "split"]
    last = frame.sort_values(["round", "stage"]).groupby(keys).tail(1)
    last = last.assign(
        column=[trace_name(m, s) for m, s in zip(last["model"], last["split"], strict=True)]
    )
    table = last.pivot_table(index=keys[:3], columns="column", values="value")
    ordered = sorted(
        table.columns,
        key=lambda c: (
            _rank(MODEL_ORDER, c.split(" · ")[0]),
            _rank(SPLIT_ORDER, c.split(" · ")[1]),
        ),
    )
    return table[ordered].reset_index()
