"""Charts of the Run page; pure functions from data frames to Vega-Lite specs (the curves
that open the page) and plotly figures (the sections built only when opened).

One visual language everywhere: colour says which model (global / global_ft / personal /
final), line style says which test data — solid for the client's own held-out data (local, i.e.
personalization), dashed for every client's held-out data of that task (pooled, i.e.
generalization), with open markers for pooled values so that a single evaluation
still shows which is which. The ``constant`` model (text generation's chance level: the
client's most frequent training answer for every item) is a grey dotted line, so it reads
as a floor rather than as one more model.
"""

from __future__ import annotations

import zlib

import pandas as pd
import plotly.graph_objects as go

from dashboard import chart_style as style
from dashboard import personalization, vega

MODEL_ORDER = ("global", "global_ft", "personal", "final", "constant")
SPLIT_ORDER = ("local", "pooled")
STAGE_ORDER = ("fl", "post")

# A colour per model kind, none shared (nor with the pink of λ·KD or the replacements' grey).
MODEL_COLORS = {
    "global": "#1c83e1",
    "global_ft": "#803df5",  # the global model fine-tuned after FL: violet, not a second blue
    "personal": "#ff8700",
    "final": "#21c354",
    "constant": "#9a9ca5",  # chance level: neutral grey
}
MODEL_LABELS = {"constant": "constant answer (chance)"}
SPLIT_DASH = {"local": "solid", "pooled": "dash"}
# Models drawn in their own line style; the split still shows (dotted vs dash-dotted).
MODEL_SPLIT_DASH = {"constant": {"local": "dot", "pooled": "dashdot"}}
STAGE_SYMBOL = {"fl": "circle", "post": "diamond"}
TASK_DASHES = ("solid", "dot", "dashdot", "longdash")

POST_MARKER_SIZE = 12  # stage-2 (final) values stand out from the FL rounds
REPLACEMENT = "replacement"
REPLACEMENT_COLOR = "#808495"
TASK_COLORS = ("#7d4cdb", "#e84393", "#00a3a3", "#b8860b")


def model_color(model: str) -> str:
    """A model kind's colour; a kind this dashboard does not know gets a palette colour
    that no known kind has, picked by its name (the same on every chart and page)."""
    if model in MODEL_COLORS:
        return MODEL_COLORS[model]
    spare = style.spare_colors([*MODEL_COLORS.values(), *TERM_COLORS.values()])
    return spare[zlib.crc32(model.encode()) % (len(spare) // 8)]


def round_range(frame: pd.DataFrame) -> tuple[int, int] | None:
    """The rounds every panel of a grid shows: the first to the last round of ``frame``."""
    if frame.empty:
        return None
    return int(frame["round"].min()), int(frame["round"].max())


def share_rounds(figure: go.Figure, rounds: tuple[int, int] | None) -> None:
    """Give a small multiple the grid's x-range, so the same round sits at the same place."""
    if rounds is None:
        return
    first, last = rounds
    figure.update_xaxes(
        range=[first - 0.5, last + 0.5], dtick=1 if last - first < 12 else None, autorange=False
    )


def _rank(order: tuple[str, ...], value: str) -> tuple[int, str]:
    # Known values in their natural order, unknown ones after them alphabetically.
    return (order.index(value), "") if value in order else (len(order), value)


def panels(frame: pd.DataFrame) -> list[tuple[int, str]]:
    """The (client, task) pairs to draw one small chart each for, in reading order."""
    if frame.empty:
        return []
    pairs = frame[["client", "task"]].drop_duplicates()
    return sorted((int(c), str(t)) for c, t in pairs.itertuples(index=False))


def model_label(model: str) -> str:
    """What a legend calls a model: its name, or what it stands for where the name does not
    say (``constant`` is chance, not a trained model)."""
    return MODEL_LABELS.get(model, model)


def trace_name(model: str, split: str, stage: str | None = None) -> str:
    return f"{model_label(model)} · {split}" + (f" · {stage}" if stage else "")


def line_dash(model: str, split: str) -> str | None:
    return MODEL_SPLIT_DASH.get(model, SPLIT_DASH).get(split)


def metric_spec(
    frame: pd.DataFrame,
    *,
    metric: str,
    title: str,
    replacement_rounds: list[int] | None = None,
    rounds: tuple[int, int] | None = None,
) -> vega.Spec:
    """One client's one task: ``metric`` over rounds, a line per model, split (and stage),
    as a Vega-Lite spec.

    The stage only enters the series name when a line would otherwise stand for two stages,
    so the usual chart reads "personal · local" rather than "personal · local · fl".
    Stage-2 (post-FL) values get large markers and a dotted "stage 2" rule, and the rounds
    where TAP's personalized model took over the global one (``replacement_rounds``) get
    grey triangles along the bottom of the chart: the same timeline as the curves.
    ``rounds`` is the x-range shared by every panel of the grid.
    """
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
    parts = []
    for order, (stage, model, split) in enumerate(keys):
        rows = groups.get_group((stage, model, split)).sort_values("round")
        color = model_color(model)
        parts.append(
            pd.DataFrame(
                {
                    "round": rows["round"].astype(int),
                    "value": rows["value"].astype(float),
                    "series": trace_name(model, split, stage if several_stages else None),
                    "order": order,
                    "color": color,
                    "dash": [vega.dash(line_dash(model, split))] * len(rows),
                    "shape": vega.SHAPES[STAGE_SYMBOL.get(stage, "square")],
                    "fill": "white" if split == "pooled" else color,  # open: pooled
                    "size": (POST_MARKER_SIZE if stage == "post" else 7) ** 2,
                }
            )
        )
    curves = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    x = vega.round_axis(rounds, frame["round"] if not frame.empty else ())
    y = {"field": "value", "type": "quantitative", "title": metric, "scale": {"zero": False}}
    tooltip = [
        {"field": "series", "type": "nominal", "title": "model · data"},
        {"field": "round", "type": "quantitative"},
        {"field": "value", "type": "quantitative", "format": ".4g", "title": metric},
    ]
    points = vega.records(curves)  # once: the lines and the markers draw the same rows
    layers: list[vega.Spec] = [
        {
            "data": {"values": points},
            "mark": {"type": "line", "strokeWidth": 2},
            "encoding": {
                "x": x,
                "y": y,
                "detail": {"field": "series", "type": "nominal"},
                "order": {"field": "round", "type": "quantitative"},
                "color": vega.direct("color"),
                "strokeDash": vega.direct("dash"),
            },
        },
        {
            "data": {"values": points},
            "mark": {"type": "point", "filled": True, "strokeWidth": 1.5, "opacity": 1},
            "encoding": {
                "x": x,
                "y": y,
                "shape": vega.direct("shape"),
                "size": vega.direct("size", "quantitative"),
                "stroke": vega.direct("color"),
                "fill": vega.direct("fill"),
                "tooltip": tooltip,
            },
        },
    ]
    post = frame[frame["stage"] == "post"]
    if not post.empty:
        at = float(post["round"].min())
        layers.append(
            {
                "data": {"values": [{"round": at, "text": "stage 2"}]},
                "mark": {"type": "rule", "color": REPLACEMENT_COLOR, "strokeDash": [1.5, 3]},
                "encoding": {"x": x},
            }
        )
        layers.append(
            {
                "data": {"values": [{"round": at, "text": "stage 2"}]},
                "mark": {
                    "type": "text",
                    "align": "right",
                    "baseline": "top",
                    "dx": -3,
                    "y": 2,
                    "fontSize": 10,
                    "color": REPLACEMENT_COLOR,
                },
                "encoding": {"x": x, "text": {"field": "text", "type": "nominal"}},
            }
        )
    if replacement_rounds and not frame.empty:
        low = float(frame["value"].min())
        layers.append(
            {
                "data": {
                    "values": [
                        {"round": int(r), "value": low, "series": REPLACEMENT}
                        for r in replacement_rounds
                    ]
                },
                "mark": {
                    "type": "point",
                    "shape": "triangle-up",
                    "filled": True,
                    "size": 81,
                    "color": REPLACEMENT_COLOR,
                    "opacity": 1,
                },
                "encoding": {
                    "x": x,
                    "y": y,
                    "tooltip": [{"field": "round", "type": "quantitative", "title": "replacement"}],
                },
            }
        )
    return vega.small(title, layers)


def replacement_timeline(events: pd.DataFrame, *, rounds: tuple[int, int]) -> go.Figure:
    """Every replacement of the run: x = round (as on the curves), y = client, colour = task."""
    figure = go.Figure()
    for index, (task, rows) in enumerate(events.groupby("task", sort=True)):
        figure.add_trace(
            go.Scatter(
                x=rows["round"],
                y=rows["client"],
                name=str(task),
                mode="markers",
                marker={
                    "symbol": "triangle-up",
                    "size": 9,
                    "color": TASK_COLORS[index % len(TASK_COLORS)],
                },
                customdata=rows[["margin", "global_loss", "personal_loss"]].to_numpy(),
                hovertemplate=(
                    "round %{x} · client %{y}<br>margin %{customdata[0]:.3g} · global loss "
                    "%{customdata[1]:.3g} · personal loss %{customdata[2]:.3g}"
                    f"<extra>{task}</extra>"
                ),
            )
        )
    figure.update_layout(
        height=max(180, 22 * events["client"].nunique() + 90),
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis={"title": "round", "range": [rounds[0] - 0.5, rounds[1] + 0.5]},
        yaxis={"title": "client", "dtick": 1},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02},
    )
    return figure


def loss_figure(
    frame: pd.DataFrame, *, title: str, rounds: tuple[int, int] | None = None
) -> go.Figure:
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
                line={"color": model_color(model), "dash": dash},
                marker={"symbol": STAGE_SYMBOL.get(stage, "square"), "size": 5},
                hovertemplate=f"%{{y:.4g}}<extra>{name}</extra>",
            )
        )
    style.small_layout(figure, title=title, y_title="training loss")
    # Task names are long; a legend is the only place they fit.
    figure.update_layout(
        showlegend=True,
        legend={"orientation": "h", "yanchor": "top", "y": -0.12, "font": {"size": 10}},
        xaxis={"title": None},  # the legend sits where the axis title would; x is the round
        height=style.SMALL_HEIGHT + 40,
    )
    share_rounds(figure, rounds)
    return figure


# Stage 2 step by step: TAP's teacher and student, and the terms added to a loss.
TEACHER = "global_ft"
STEP_ROLES = {TEACHER: "teacher", "final": "student"}
TASK_LOSS_TERM = "task"  # the API's term of a task's own loss
TERM_LABELS = {"kd": "λ·KD"}
TERM_COLORS = {"kd": "#e84393"}


def step_trace_name(model: str, term: str, task: str, *, roles: bool = True) -> str:
    """A task's loss ("student · vqa") or a term added to it ("student λ·KD · vqa"); with
    ``roles=False`` the model's own name ("final · vqa")."""
    who = STEP_ROLES.get(model, model) if roles else model
    what = who if term == TASK_LOSS_TERM else f"{who} {TERM_LABELS.get(term, term)}"
    return f"{what} · {task}" if task else what


def step_figure(frame: pd.DataFrame, *, title: str) -> go.Figure:
    """One client's stage-2 fine-tunings per optimizer step, on a log axis: each task's loss
    of each model (colour = model, dash = task) and each term the algorithm adds to a loss
    (λ·KD: pink, with crosses). Models are named teacher and student where there is a
    teacher (TAP's distillation), else by their own names (fedavg_ft's ``final`` is no
    student). Several fine-tunings of one model get the round in their names."""
    figure = go.Figure()
    roles = TEACHER in set(frame["model"])
    tasks = sorted(t for t in frame["task"].unique() if t)
    several = not frame.empty and bool(frame.groupby("model")["round"].nunique().max() > 1)
    groups = frame.groupby(["model", "term", "task", "stage", "round"], sort=False)
    keys = sorted(
        groups.groups,
        key=lambda k: (k[1] != TASK_LOSS_TERM, _rank(MODEL_ORDER, k[0]), k[1], k[2], k[3], k[4]),
    )
    for model, term, task, stage, rnd in keys:
        rows = groups.get_group((model, term, task, stage, rnd)).sort_values("step")
        name = step_trace_name(model, term, task, roles=roles)
        name += f" · round {rnd}" if several else ""
        loss = term == TASK_LOSS_TERM
        color = model_color(model) if loss else TERM_COLORS.get(term, style.OTHER_COLOR)
        dash = TASK_DASHES[tasks.index(task) % len(TASK_DASHES)] if task else "solid"
        figure.add_trace(
            go.Scatter(
                x=rows["step"],
                y=rows["value"],
                name=name,
                mode="lines+markers",
                line={"color": color, "dash": dash, "width": 2 if loss else 1.5},
                marker={"symbol": "circle" if loss else "x", "size": 5},
                customdata=rows["micro_batches"].to_numpy(),
                hovertemplate=f"%{{y:.4g}} (%{{customdata}} micro-batches)<extra>{name}</extra>",
            )
        )
    style.small_layout(figure, title=title, y_title="per step (log)")
    figure.update_layout(
        showlegend=True,
        legend={"orientation": "h", "yanchor": "top", "y": -0.22, "font": {"size": 10}},
        # λ·KD can be a thousandth of a task loss: a log axis shows both.
        yaxis={"type": "log"},
        xaxis={"title": "optimizer step"},
        height=style.SMALL_HEIGHT + 80,
    )
    return figure


def _symbol(stage: str, split: str) -> str:
    # Open markers for pooled data: tells the splits apart where a line has one point.
    return STAGE_SYMBOL.get(stage, "square") + ("-open" if split == "pooled" else "")


def _stage_matters(frame: pd.DataFrame, keys: list[str]) -> bool:
    """True when some line (e.g. one model on one split) has values in several stages."""
    return not frame.empty and bool(frame.groupby(keys)["stage"].nunique().max() > 1)


def latest_values(frame: pd.DataFrame) -> pd.DataFrame:
    """The last evaluated value per client, task, test data (split) and model, with what
    each personalized model changed against the global one (``personal-global``,
    ``final-global``: plain differences, so negative is better for mse and loss).

    A row per client, task, metric and split, a column per model: narrow enough to fit
    the page whatever models a run has.
    """
    last = personalization.last_values(frame)
    if last.empty:
        return pd.DataFrame()
    keys = ["client", "task", "metric", "split"]
    table = last.pivot_table(index=keys, columns="model", values="value")
    table = table[sorted(table.columns, key=lambda m: _rank(MODEL_ORDER, m))]
    for model in personalization.PERSONALIZED:
        if model in table and personalization.REFERENCE in table:
            table[delta_column(model)] = table[model] - table[personalization.REFERENCE]
    table.columns.name = None
    table = table.reset_index()
    split_rank = table["split"].map(lambda split: _rank(SPLIT_ORDER, split))
    return (
        table.assign(_split=split_rank)
        .sort_values(["client", "task", "metric", "_split"])
        .drop(columns="_split")
        .reset_index(drop=True)
    )


def delta_column(model: str) -> str:
    return f"{model}-{personalization.REFERENCE}"


BAR_PX = 11  # per bar: a client-task row holds a bar per personalized model
GAIN_PANEL_WIDTH = 400
BAR_FIELDS = ["label", "series", "what", "delta"]  # what a bar's mark and tooltip read
GAIN_TITLES = {
    "bought": "bought: on the client's own test data",
    "cost": "cost: on the pooled test data",
}


def gains_chart(gained: pd.DataFrame) -> vega.Spec:
    """What personalization bought (own test data, left) and cost (pooled test data, right)
    per client and task: horizontal bars, one per personalized model in its colour,
    positive = better than the global model on the task's main metric. A row of panels per
    metric, each with its own scale: an mse difference and an accuracy one share no units.

    A Vega-Lite spec, not plotly: the browser draws it without loading plotly.js (4.7 MB),
    so the page's answer is the first thing on screen. Built as a plain dict, not with
    Altair: Altair's objects and their schema validation took about 0.3 s of the server's
    script before this first chart could be sent.
    """
    models = [m for m in personalization.PERSONALIZED if m in set(gained["model"])]
    series = [f"{m}-global" for m in models]
    long = gained.assign(
        label=[f"client {c} · {t}" for c, t in zip(gained["client"], gained["task"], strict=True)],
        series=[f"{m}-global" for m in gained["model"]],
    ).melt(
        id_vars=["label", "metric", "lower_is_better", "series"],
        value_vars=["bought", "cost"],
        var_name="what",
        value_name="delta",
    )
    color = {
        "field": "series",
        "type": "nominal",
        "scale": {"domain": series, "range": [model_color(m) for m in models]},
        "legend": {"title": "Δ vs global (positive = better)", "orient": "top"},
    }
    rows = []
    for index, metric in enumerate(sorted(long["metric"].unique())):
        part = long[long["metric"] == metric]
        flipped = bool(part["lower_is_better"].iloc[0])
        order = sorted(set(part["label"]), key=lambda label: (int(label.split()[1]), label))
        panels = []
        for what in ("bought", "cost"):
            bars = {
                "data": {"values": vega.records(part[part["what"] == what][BAR_FIELDS])},
                "mark": {"type": "bar"},
                "encoding": {
                    "x": {
                        "field": "delta",
                        "type": "quantitative",
                        "title": f"{metric}" + (" (lower is better: flipped)" if flipped else ""),
                    },
                    "y": {
                        "field": "label",
                        "type": "nominal",
                        "sort": order,
                        "title": None,
                        "axis": {
                            "labels": what == "bought",
                            "ticks": what == "bought",
                            "labelLimit": 320,
                        },
                    },
                    "yOffset": {"field": "series", "type": "nominal", "sort": series},
                    "color": color,
                    "tooltip": [
                        {"field": "label", "type": "nominal", "title": "client · task"},
                        {"field": "series", "type": "nominal", "title": "model"},
                        {"field": "delta", "type": "quantitative", "title": what, "format": "+.4g"},
                    ],
                },
            }
            zero = {
                "data": {"values": [{"delta": 0.0}]},
                "mark": {"type": "rule", "color": "#808495"},
                "encoding": {"x": {"field": "delta", "type": "quantitative"}},
            }
            panels.append(
                {
                    "layer": [bars, zero],
                    "width": GAIN_PANEL_WIDTH,
                    "height": {"step": BAR_PX},
                    "title": GAIN_TITLES[what] if index == 0 else "",
                }
            )
        rows.append({"hconcat": panels, "spacing": 12})
    return {"vconcat": rows, "spacing": 16, "config": {"view": {"stroke": None}}}
