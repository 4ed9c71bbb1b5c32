"""Compare: a sweep (or any runs) side by side. Runs with the same config but the seed
form a group; each group is a line with a band of ± one std over its seeds. At the top,
warnings when the comparison is not a fair one, then the verdict: one group ("ours", TAP
by default) against every other, win, tie or loss per client and task on personalization
and generalization, each task on its own main metric. Below it the curves, the final
values with the best marked, and personalization against generalization per group. The
means over seeds come from the server (``GET /compare``); the verdict's tie band is a
bootstrap over the runs' final values, paired by seed, done here (``dashboard.compare``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from backend.client import ApiError
from backend.client.types import Comparison, Run
from dashboard import (
    chart_style,
    compare,
    compare_charts,
    data,
    static_chart,
    traffic,
    traffic_charts,
    ui,
)
from dashboard.export_ui import LazyFigure, export_section
from dashboard.markdown_table import markdown_table
from dashboard.ui import MAIN, SPLIT_LABELS

SWEEP, RUNS = "A sweep", "Runs"
# Verdict and final-value tables taller than this many rows scroll inside the page.
TABLE_ROWS_SHOWN = 30
ROW_PX, HEADER_PX = 36, 40  # a Markdown table's row and header, as the browser draws them
WIDE_PX = 900  # a chart the width of the page, drawn on the server
# The verdict's result cells, coloured as the grid used to colour them.
RESULT_BACKGROUNDS = {"result": {compare.WIN: "green", compare.LOSS: "red"}}


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


MAX_RUN_ID = 2**63 - 1  # the largest id SQL can hold


def bad_link(message: str) -> None:
    """Say what is wrong with the page's link and stop: no silent fallback to a default."""
    st.error(f"**This link cannot be compared.** {message}", icon=":material/link_off:")
    st.page_link(ui.COMPARE_PAGE, label="Compare without the link", icon=":material/restart_alt:")
    st.stop()


def linked_runs(raw: str, by_id: dict[int, Run]) -> list[int]:
    """The run ids of ``?runs=``, each checked: a number, small enough, an existing run
    (looked up when it is older than the runs listed here)."""
    parts = [part.strip() for part in raw.split(",")]
    not_ids = [part for part in parts if not part.isdigit()]
    if not_ids:
        bad_link(f"`runs` must be run ids separated by commas; `{not_ids[0]}` is not a run id.")
    ids = list(dict.fromkeys(int(part) for part in parts))
    too_big = [i for i in ids if i > MAX_RUN_ID]
    if too_big:
        bad_link(f"Run id `{too_big[0]}` is larger than any run id can be.")
    missing = []
    for run_id in (i for i in ids if i not in by_id):
        try:
            by_id[run_id] = data.run(run_id)
        except ApiError as err:
            if err.status != 404:
                raise
            missing.append(run_id)
    if missing:
        listed = ", ".join(f"#{i}" for i in missing)
        bad_link(f"No run {listed}: the link names runs that do not exist.")
    return ids


def pick_runs(recent: list[Run]) -> tuple[list[Run], str | None]:
    """(the runs to compare, the sweep's group id or None), kept in the URL for sharing.
    A link whose runs or group do not exist says so."""
    groups = sweep_groups(recent)
    by_id = {run["id"]: run for run in recent}
    wanted_group = st.query_params.get("group")
    first_visit = "compare_source" not in st.session_state
    wanted_runs: list[int] = []
    if first_visit and "runs" in st.query_params:
        wanted_runs = linked_runs(st.query_params["runs"], by_id)
        st.session_state["compare_source"] = RUNS
    if first_visit and wanted_group is not None and not wanted_runs and wanted_group not in groups:
        members = data.runs(group_id=wanted_group, limit=500)["items"]
        if not members:
            bad_link(f"No sweep `{wanted_group}`: the link names a group without runs.")
        groups[wanted_group] = members
    source = st.segmented_control("Compare", [SWEEP, RUNS], default=SWEEP, key="compare_source")
    if source == RUNS:
        if wanted_runs and "compare_runs" not in st.session_state:
            st.session_state["compare_runs"] = wanted_runs
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


def warnings_section(comps: list[Comparison]) -> None:
    for warning in compare.warnings(comps):
        st.warning(warning, icon=":material/warning:")


def pick_ours(groups: list[tuple[str, str]]) -> str:
    """The group the verdict weighs against the others (TAP's by default)."""
    labels = [label for label, _ in groups]
    return str(
        st.selectbox(
            "Ours",
            labels,
            index=compare.default_ours(groups),
            help="the group weighed against every other group of the comparison",
            key="compare_ours",
        )
    )


def verdict_section(
    runs: dict[str, pd.DataFrame], groups: list[tuple[str, str]], better: dict[str, bool]
) -> None:
    st.subheader("Verdict: how does ours do against each other group?")
    if len(groups) < 2:
        present = ", ".join(label for label, _ in groups) or "no succeeded runs"
        st.info(
            f"The verdict needs two groups or more; this comparison has: {present}.",
            icon=":material/info:",
        )
        return
    ours = pick_ours(groups)
    table = compare.verdict(runs, ours, better)
    if table.empty:
        st.info(f"No final values of {ours} to weigh yet.", icon=":material/info:")
        return
    summary = compare.verdict_summary(table)
    st.markdown(compare.headline(ours, summary))
    st.markdown(markdown_table(summary))
    lower = sorted(m for m in set(table["metric"]) if not better.get(m, True))
    st.caption(
        f"Final values, mean over seeds; *difference* = {ours} - the other group. *win* or "
        "*loss* when the 95% interval of the difference (a bootstrap over seeds, runs paired "
        f"by seed, {compare.BOOTSTRAP_RESAMPLES} resamples) leaves out 0, else *tie*; one "
        "seed gives no verdict. A client-task pair that one group lacks is not counted."
        + (f" Lower is better for {', '.join(lower)}: lower wins." if lower else "")
    )
    shown = compare.verdict_display(table, ours)
    for i, (rival, rows) in enumerate(shown.groupby("vs", sort=False)):
        st.markdown(f"**{ours}** vs **{rival}**, per client and task")
        static_table(
            rows.drop(columns="vs"), key=f"compare_verdict_{i}", backgrounds=RESULT_BACKGROUNDS
        )


def static_table(
    frame: pd.DataFrame, *, key: str, backgrounds: dict[str, dict[str, str]] | None = None
) -> None:
    """A table drawn by the Markdown renderer every page loads, in a container keyed
    ``key``, which scrolls when the table is long. Not ``st.dataframe``: its grid and
    Arrow formatting are 1.2 MB of script for the browser to load before the charts."""
    long = len(frame) > TABLE_ROWS_SHOWN
    height = TABLE_ROWS_SHOWN * ROW_PX + HEADER_PX if long else "content"
    with st.container(key=key, height=height, border=False):
        st.markdown(markdown_table(frame, backgrounds=backgrounds))


def curves_section(
    curves: pd.DataFrame,
    colors: dict[str, str],
    split: str,
    model: str,
    figures: dict[str, LazyFigure],
    better: dict[str, bool],
    interactive: bool,
) -> None:
    st.subheader("Over rounds")
    st.caption(
        f"model **{model}** on **{SPLIT_LABELS.get(split, split)}** · mean ± std over seeds · "
        "each task on its own metric"
        + compare_charts.lower_is_better_note(better, set(curves["metric"]))
    )
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
    shown_labels = list(dict.fromkeys(curves["label"]))
    static_chart.chart(
        compare_charts.legend_spec({label: colors[label] for label in shown_labels}),
        interactive=interactive,
        key="compare_legend",
        alt="the groups' colours: " + ", ".join(shown_labels),
        width=WIDE_PX,
    )
    rounds = (int(curves["round"].min()), int(curves["round"].max()))  # one x-range for all

    def figure(client: int, task: str) -> dict[str, Any]:
        panel = curves[(curves["client"] == client) & (curves["task"] == task)]
        title = f"Client {client} · {task}"
        metric = str(panel["metric"].iloc[0])
        options = {
            "metric": metric,
            "title": title,
            "colors": colors,
            "higher_is_better": better.get(metric, True),
        }
        spec = compare_charts.compare_spec(panel, rounds=rounds, **options)
        figures[title] = LazyFigure(spec, lambda: compare_charts.compare_figure(panel, **options))
        return spec

    ui.chart_grid(panels, figure, static_key=None if interactive else "compare_curve")


def communication_section(
    curves: pd.DataFrame, comps: list[Comparison], colors: dict[str, str], model: str
) -> None:
    """Each group's curve metric against the MB it has sent: communication cost, as FL
    papers report it. Reads the curves already fetched and each run's traffic rows, only
    while open (a sweep of many runs costs a request per run)."""
    section = st.expander(
        "Communication cost", key="compare_traffic", icon=":material/swap_vert:", on_change="rerun"
    )
    with section:
        if not section.open:
            return
        groups = {g["label"]: g["run_ids"] for g in (comps[0]["groups"] if comps else [])}
        with ui.api_errors():
            sent = {label: traffic.group_traffic(ids) for label, ids in groups.items()}
        points = traffic.cost_vs_metric(curves, sent)
        if points.empty:
            st.caption("No evaluated rounds to set against the traffic yet.")
            return
        st.caption(
            f"Per group: the curves' metric of model **{model}** (mean over clients and "
            "tasks, mean over seeds) against the MB of trainable tensors sent down and up so "
            "far; a group without that model has no line. Local training sends nothing: its "
            "points stand at 0 MB."
        )
        for metric, rows in points.groupby("metric", sort=True):
            st.vega_lite_chart(
                traffic_charts.cost_spec(rows, metric=str(metric), colors=colors),
                width="stretch",
                key=f"compare_traffic_{metric}",
            )


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

# Which metrics and models there are: from every run compared (runs differ in their models
# and tasks: FedAvg has no personal model, TAP has; a run may hold tasks others lack).
with ui.api_errors():
    catalog = data.catalog()
    facets = data.merge_facets(
        [
            data.metric_facets(candidate, first_rounds=ui.first_eval_round(candidate))
            for candidate in runs
            if candidate["status"] == "succeeded"
        ]
    )
if not facets["metric"]:
    st.info(
        "None of these runs has succeeded with evaluations yet: only succeeded runs are compared.",
        icon=":material/hourglass_top:",
    )
    st.stop()

mains_per_task = compare.task_mains(facets["task_metrics"], catalog)
metric_col, split_col, model_col, final_col = st.columns(4)
choice, _ = ui.metric_choice(metric_col, facets, catalog, key="compare_metric")
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
interactive_charts = st.toggle(
    "Interactive charts",
    value=False,
    key="compare_interactive",
    help="Hover for each point's values. Off, the charts are drawn on the server as images, "
    "which show at once; on, the browser first loads the chart library (about 0.8 MB).",
)

if choice == MAIN:
    # Each task on its own main metric: fetch every main metric, keep each task's own.
    fetched, mains = sorted(set(mains_per_task.values())), mains_per_task
else:
    fetched, mains = [choice], {task: choice for task in facets["task_metrics"]}
fetch = comparisons(fetched, runs, group)
with ui.api_errors():
    local_data = fetch("local", final_model)
    pooled_data = fetch("pooled", final_model)
    curve_data = fetch(curve_split or "local", curve_model)
better = compare.higher_is_better(curve_data)
local_final = compare.main_only(compare.finals_frame(local_data), mains)
pooled_final = compare.main_only(compare.finals_frame(pooled_data), mains)
final_runs = {
    "local": compare.main_only(compare.runs_frame(local_data), mains),
    "pooled": compare.main_only(compare.runs_frame(pooled_data), mains),
}
curves = compare.main_only(compare.curves_frame(curve_data), mains)
pairs = list(
    dict.fromkeys((g["label"], g["algorithm"]) for comp in local_data for g in comp["groups"])
)
colors = chart_style.group_colors(pairs, chart_style.algorithm_colors(catalog["algorithms"]))
groups = [label for label, _ in pairs]
done = sum(len(g["run_ids"]) for g in (local_data[0]["groups"] if local_data else []))
st.caption(
    f"{done} runs in {len(groups)} group{'s' if len(groups) != 1 else ''}: " + ", ".join(groups)
)

warnings_section([*local_data, *pooled_data])
verdict_section(final_runs, pairs, better)
st.divider()
figures: dict[str, LazyFigure] = {}  # every chart drawn, by title: for the export
curves_section(
    curves, colors, curve_split or "local", curve_model, figures, better, interactive_charts
)
communication_section(curves, curve_data, colors, curve_model)
st.divider()

st.subheader("Final values")
st.caption(
    f"model **{final_model}** on each client's own test data, mean ± std over seeds at each "
    f"run's last evaluated round; {compare.BEST_MARK} marks the best group"
    + compare_charts.lower_is_better_note(better, set(local_final["metric"]))
)
table = compare.final_table(local_final, better)
static_table(table, key="compare_final")
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
for n, (metric, rows) in enumerate(points.groupby("metric", sort=True)):
    direction = "" if better.get(str(metric), True) else " · lower is better: down and left"
    st.markdown(f"**{metric}** · a point per client and task; colour = group{direction}")
    tradeoff = compare_charts.tradeoff_spec(rows, colors=colors)
    figures[f"Personalization vs generalization · {metric}"] = LazyFigure(
        tradeoff, lambda rows=rows: compare_charts.tradeoff_figure(rows, colors=colors)
    )
    static_chart.chart(
        tradeoff,
        interactive=interactive_charts,
        key=f"compare_tradeoff_{n}",
        alt=f"personalization against generalization on {metric}, a point per client and task",
        width=WIDE_PX,
    )

st.divider()
export_section(
    local_final,
    better,
    figures,
    name=f"compare-{group or 'runs'}",
    title=f"Final values of the {final_model} model on each client's own test data",
)
