"""Compare: a sweep (or any runs) side by side. Runs with the same config but the seed
form a group; each group is a line with a band of ± one std over its seeds. At the top,
the answer to "did TAP beat FedAvg and local here?" for every client and task; below it
the curves, the final values with the best marked, and personalization against
generalization per algorithm. All aggregation happens on the server (``GET /compare``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from backend.client.types import Comparison, Run
from dashboard import chart_style, compare, compare_charts, data, ui
from dashboard.export_ui import export_section
from dashboard.ui import MAIN, SPLIT_LABELS

SWEEP, RUNS = "A sweep", "Runs"


def sweep_groups(runs: list[Run]) -> dict[str, list[Run]]:
    """group id -> its runs: sweeps (several runs) first, newest first within each kind
    (the API lists runs newest first), so the default pick is the latest real sweep."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        if run.get("group_id"):
            groups.setdefault(str(run["group_id"]), []).append(run)
    return dict(sorted(groups.items(), key=lambda item: len(item[1]) < 2))


def group_label(members: list[Run]) -> str:
    first = members[0]
    name = first.get("experiment_name") or f"experiment #{first['experiment_id']}"
    algorithms = ", ".join(sorted({run["algorithm"] for run in members}))
    seeds = len({run["seed"] for run in members})
    done = sum(run["status"] == "succeeded" for run in members)
    return (
        f"{name} · {len(members)} runs ({algorithms}; {seeds} seed{'s' if seeds != 1 else ''})"
        f" · {done} succeeded"
    )


def pick_runs(recent: list[Run]) -> tuple[list[Run], str | None]:
    """(the runs to compare, the sweep's group id or None), kept in the URL for sharing."""
    groups = sweep_groups(recent)
    by_id = {run["id"]: run for run in recent}
    wanted_group = st.query_params.get("group")
    wanted_runs = [int(x) for x in st.query_params.get("runs", "").split(",") if x.isdigit()]
    if wanted_runs and "compare_source" not in st.session_state:
        st.session_state["compare_source"] = RUNS
    source = st.segmented_control("Compare", [SWEEP, RUNS], default=SWEEP, key="compare_source")
    if source == RUNS:
        if wanted_runs and "compare_runs" not in st.session_state:
            st.session_state["compare_runs"] = [r for r in wanted_runs if r in by_id]
        chosen = st.multiselect(
            "Runs",
            list(by_id),
            format_func=lambda run_id: ui.run_label(by_id[run_id]),
            placeholder="pick runs: same config but the seed make one group",
            key="compare_runs",
        )
        st.query_params.pop("group", None)
        if chosen:
            st.query_params["runs"] = ",".join(map(str, chosen))
        return [by_id[run_id] for run_id in chosen], None
    if not groups:
        return [], None
    if wanted_group in groups and "compare_group" not in st.session_state:
        st.session_state["compare_group"] = wanted_group
    group = st.selectbox(
        "Sweep",
        list(groups),
        format_func=lambda g: group_label(groups[g]),
        key="compare_group",
    )
    st.query_params.pop("runs", None)
    st.query_params["group"] = group
    return groups[group], group


def comparisons(
    metrics: list[str], runs: list[Run], group: str | None
) -> Callable[[str, str], list[Comparison]]:
    """A fetcher for one (split, model): one compare call per metric, all cached."""
    run_ids = tuple(sorted(run["id"] for run in runs)) if group is None else ()

    def fetch(split: str, model: str) -> list[Comparison]:
        return [
            data.compare(metric=m, runs=run_ids, group=group, split=split, model=model)
            for m in metrics
        ]

    return fetch


def verdict_style(value: Any) -> str:
    text = str(value)
    if text.startswith("better") or text == "yes":
        return "background-color: rgba(33, 195, 84, 0.18)"
    if text.startswith("worse"):
        return "background-color: rgba(255, 43, 43, 0.15)"
    return ""


def summary_section(local: pd.DataFrame, pooled: pd.DataFrame, better: dict[str, bool]):
    st.subheader("Did TAP beat FedAvg and local here?")
    table = compare.summary(local, pooled, better)
    if table.empty:
        present = ", ".join(sorted(set(local["algorithm"]))) or "no finished runs"
        st.info(
            "The summary needs a TAP group and a FedAvg or local group; this comparison has: "
            f"{present}.",
            icon=":material/info:",
        )
        return
    st.markdown(compare.headline(table))
    verdicts = [c for c in table.columns if c.startswith("vs ") or c.startswith("general")]
    st.dataframe(
        table.style.map(verdict_style, subset=[*verdicts, "TAP beat all"]).format(
            precision=4, subset=[c for c in ("tap", "fedavg", "local") if c in table]
        ),
        hide_index=True,
        key="compare_summary",
    )
    st.caption(
        "Final values on each client's own test data (personalization), mean over seeds; "
        "a tie is a difference within the combined std over seeds. *generalization vs "
        "fedavg* compares the same models on every client's test data of the task."
    )


def curves_section(
    curves: pd.DataFrame,
    colors: dict[str, str],
    split: str,
    model: str,
    figures: dict[str, go.Figure],
):
    st.subheader("Over rounds")
    st.caption(f"model **{model}** on **{SPLIT_LABELS.get(split, split)}** · mean ± std over seeds")
    if curves.empty:
        st.info(
            f"No {model} model values on {split} test data in these runs.",
            icon=":material/filter_alt_off:",
        )
        return
    clients = sorted(int(c) for c in curves["client"].unique())
    shown = ui.client_page("compare_page", clients)
    curves = curves[curves["client"].isin(shown)]
    panels = sorted({(int(c), str(t)) for c, t in curves[["client", "task"]].itertuples(False)})

    def figure(client: int, task: str) -> go.Figure:
        panel = curves[(curves["client"] == client) & (curves["task"] == task)]
        title = f"Client {client} · {task}"
        figures[title] = compare_charts.compare_figure(
            panel, metric=str(panel["metric"].iloc[0]), title=title, colors=colors
        )
        return figures[title]

    ui.chart_grid(panels, figure)


# -- the page ----------------------------------------------------------------------------------

st.title("Compare")

with ui.api_errors():
    recent_runs = data.runs(limit=500)["items"]
if not recent_runs:
    st.info("No runs yet. Start a sweep on the **Submit** page.", icon=":material/inbox:")
    st.stop()

runs, group = pick_runs(recent_runs)
if not runs:
    st.info("Pick a sweep or some runs to compare.", icon=":material/checklist:")
    st.stop()

# Which metrics and models there are: from every algorithm's first run with evaluations,
# since algorithms differ in their models (FedAvg has no personal model, TAP has).
found: dict[str, dict[str, Any]] = {}
with ui.api_errors():
    catalog = data.catalog()
    for candidate in runs:
        if candidate["algorithm"] in found:
            continue
        run_facets = data.metric_facets(candidate, first_rounds=ui.first_eval_round(candidate))
        if run_facets["metric"]:
            found[candidate["algorithm"]] = run_facets
facets = data.merge_facets(list(found.values()))
if not facets["metric"]:
    st.info("None of these runs has evaluations yet.", icon=":material/hourglass_top:")
    st.stop()

metric_col, split_col, model_col, final_col = st.columns(4)
choice, mains = ui.metric_choice(metric_col, facets, catalog, key="compare_metric")
curve_split = split_col.segmented_control(
    "Curves on",
    ["local", "pooled"],
    default="local",
    format_func=SPLIT_LABELS.get,
    key="compare_split",
)
models = facets["model"]
curve_model = model_col.selectbox(
    "Curves of model",
    models,
    index=models.index("personal") if "personal" in models else 0,
    key="compare_curve_model",
)
final_model = final_col.selectbox(
    "Final values of model",
    models,
    index=models.index("final") if "final" in models else len(models) - 1,
    help="`final`: each algorithm's model after stage 2 (TAP, FedAvg, local, …)",
    key="compare_final_model",
)

fetch = comparisons(mains if choice == MAIN else [choice], runs, group)
with ui.api_errors():
    local_final = compare.finals_frame(fetch("local", final_model))
    pooled_final = compare.finals_frame(fetch("pooled", final_model))
    curve_data = fetch(curve_split or "local", curve_model)
better = compare.higher_is_better(curve_data)
curves = compare.curves_frame(curve_data)
pairs = [(g["label"], g["algorithm"]) for comp in curve_data for g in comp["groups"]]
colors = chart_style.group_colors(
    list(dict.fromkeys(pairs)), chart_style.algorithm_colors(catalog["algorithms"])
)
groups = list(dict.fromkeys(label for label, _ in pairs))
st.caption(
    f"{len(runs)} runs in {len(groups)} group{'s' if len(groups) != 1 else ''}: "
    + ", ".join(groups)
)

summary_section(local_final, pooled_final, better)
st.divider()
figures: dict[str, go.Figure] = {}  # every figure drawn, by title: for the export
curves_section(curves, colors, curve_split or "local", curve_model, figures)
st.divider()

st.subheader("Final values")
st.caption(
    f"model **{final_model}** on each client's own test data, mean ± std over seeds at each "
    f"run's last evaluated round; {compare.BEST_MARK} marks the best group"
)
table = compare.final_table(local_final, better)
st.dataframe(table, hide_index=True, key="compare_final")
st.download_button(
    "Download the final values (CSV)",
    data=pd.concat([local_final.assign(split="local"), pooled_final.assign(split="pooled")]).to_csv(
        index=False
    ),
    file_name=f"compare-{group or 'runs'}.csv",
    mime="text/csv",
    icon=":material/download:",
    on_click="ignore",
)

st.subheader("Personalization vs generalization")
points = compare.tradeoff_frame(local_final, pooled_final)
if points.empty:
    st.caption("No final values on both test sets yet.")
for metric, rows in points.groupby("metric", sort=True):
    st.markdown(f"**{metric}** · a point per client and task; colour = group")
    tradeoff = compare_charts.tradeoff_figure(rows, colors=colors)
    figures[f"Personalization vs generalization · {metric}"] = tradeoff
    st.plotly_chart(tradeoff, config={"displayModeBar": False})

st.divider()
export_section(
    local_final,
    better,
    figures,
    name=f"compare-{group or 'runs'}",
    title=f"Final values of the {final_model} model on each client's own test data",
)
