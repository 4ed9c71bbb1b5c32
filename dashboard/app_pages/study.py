"""Study: the modality-task-pair study (docs/STUDIES.md) of a sweep over the setting
``pairs`` (and algorithms and seeds). The global model's training loss over rounds, a line
per number of pairs M (mean ± std over seeds); the rounds until that loss first reaches a
threshold, against M; the final personalization and generalization per task, against M,
a line per algorithm; and a table of all of it, exported like Compare's. The grouping and
the numbers come from ``dashboard.study``."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from backend.client.types import Run
from dashboard import chart_style, compare, data, export, study, study_charts, ui
from dashboard.export_ui import LazyFigure, download, figure_downloads
from dashboard.personalization import higher_is_better

RUN_COMMAND = (
    "tapfl submit demo --name \"pairs study\" --sweep 'pairs=[1,2,3,4]' "
    "--sweep 'algorithm=[tap,fedavg]' --sweep 'seed=[1,2,3]' --set eval_every=12"
)


def pairs_sweeps(runs: list[Run]) -> dict[str, list[Run]]:
    """group id -> its runs, for the sweeps over ``pairs`` (newest first, as listed)."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        if run.get("group_id"):
            groups.setdefault(str(run["group_id"]), []).append(run)
    return {g: members for g, members in groups.items() if study.is_pairs_sweep(members)}


def sweep_label(members: list[Run]) -> str:
    first = members[0]
    name = first.get("experiment_name") or f"experiment #{first['experiment_id']}"
    values = sorted({p for p in map(study.run_pairs, members) if p is not None})
    algorithms = ", ".join(sorted({run["algorithm"] for run in members}))
    done = sum(run["status"] == "succeeded" for run in members)
    return (
        f"{name} · M = {', '.join(map(str, values))} · {algorithms} · {len(members)} runs, "
        f"{done} succeeded"
    )


def pick_sweep(recent: list[Run]) -> tuple[str, list[Run]] | None:
    sweeps = pairs_sweeps(recent)
    wanted = st.query_params.get("group")
    if wanted is not None and wanted not in sweeps:
        members = data.runs(group_id=wanted, limit=500)["items"]
        if members:
            sweeps[wanted] = members
        else:
            st.error(f"No sweep `{wanted}`: the link names a group without runs.")
    if not sweeps:
        return None
    if wanted in sweeps and "study_group" not in st.session_state:
        st.session_state["study_group"] = wanted
    group = st.selectbox(
        "Sweep", list(sweeps), format_func=lambda g: sweep_label(sweeps[g]), key="study_group"
    )
    st.query_params["group"] = group
    return group, sweeps[group]


def table_downloads(table: pd.DataFrame, name: str, title: str) -> None:
    markdown = f"{table.to_markdown(index=False, disable_numparse=True)}\n\nTable: {title}.\n"
    st.code(markdown, language="markdown")
    md_col, tex_col, csv_col = st.columns(3)
    download(md_col, "Markdown table", markdown, f"{name}.md", "text/markdown", "study_md")
    label = f"tab:{export.file_stem(name)}"
    latex = study.latex_table(table, caption=export.latex_escape(title), label=label)
    download(tex_col, "LaTeX table", latex, f"{name}.tex", "application/x-tex", "study_tex")
    csv = table.to_csv(index=False)
    download(csv_col, "Table (CSV)", csv, f"{name}.csv", "text/csv", "study_csv")


# -- the page ----------------------------------------------------------------------------------

st.title("Study: modality-task pairs")
st.caption(
    "The paper's convergence bound grows with the number of modality-task pairs M. A sweep "
    "over the setting `pairs` trains the same federation with only its first M pairs "
    "(docs/STUDIES.md)."
)

with ui.api_errors():
    recent_runs = data.runs(limit=500)["items"]
    picked = pick_sweep(recent_runs)
if picked is None:
    st.info(
        f"No sweep over `pairs` yet. Start one on the **Submit** page or with `{RUN_COMMAND}`.",
        icon=":material/inbox:",
    )
    st.stop()
group, members = picked
started = [run for run in members if run["status"] not in ("queued",)]
succeeded = [run for run in members if run["status"] == "succeeded"]

with ui.api_errors():
    catalog = data.catalog()
    losses = {
        run["id"]: study.global_loss(data.losses(run, model="global", stage="fl"))
        for run in started
    }
curves = study.loss_curves(started, losses)
if curves.empty:
    st.info("No training losses in this sweep yet.", icon=":material/hourglass_top:")
    st.stop()

algorithm_colors = chart_style.algorithm_colors(catalog["algorithms"])
values = sorted({int(p) for p in curves["pairs"].dropna()})
m_colors = study_charts.pairs_colors([*values, *([None] if curves["pairs"].isna().any() else [])])
figures: dict[str, go.Figure] = {}  # every figure drawn, by title: for the export

st.subheader("Global model's training loss over rounds")
st.caption(
    "a line per M · mean ± std over seeds · the loss of a round is the mean over the "
    "clients' tasks, weighted by their steps: more pairs average over more tasks"
)
algorithms = sorted(set(curves["algorithm"]))
for row in ui.batched(algorithms, 2):
    for column, algorithm in zip(st.columns(2), row, strict=False):
        figure = study_charts.loss_figure(curves, algorithm=algorithm, colors=m_colors)
        figures[f"Training loss · {algorithm}"] = figure
        column.plotly_chart(figure, config={"displayModeBar": False})

st.subheader("Rounds until the loss first reaches a threshold")
threshold = st.number_input(
    "Loss threshold",
    value=study.default_threshold(curves),
    format="%.4g",
    help="default: the highest last-round mean loss over the groups, which every group reaches",
    key="study_threshold",
)
threshold = float(threshold) if threshold is not None else float("inf")
reached = study.rounds_to_threshold(started, losses, threshold)
figure = study_charts.against_pairs_figure(
    reached.dropna(subset=["mean"]),
    title=f"Rounds to a training loss ≤ {threshold:.4g}",
    y_title="rounds (mean ± std over seeds that reach it)",
    colors=algorithm_colors,
)
figures["Rounds to threshold"] = figure
st.plotly_chart(figure, config={"displayModeBar": False})

st.subheader("Final personalization and generalization against M")
with ui.api_errors():
    per_run = {}
    for run in succeeded:
        metrics = data.metrics(run, model=study.FINAL_MODEL)
        task_metrics = {
            str(task): sorted(set(rows)) for task, rows in metrics.groupby("task")["metric"]
        }
        per_run[run["id"]] = study.run_finals(metrics, compare.task_mains(task_metrics, catalog))
final = study.finals(succeeded, per_run)
if final.empty:
    st.info("No succeeded run with final values yet.", icon=":material/hourglass_top:")
else:
    st.caption(
        f"model **{study.FINAL_MODEL}** at each run's last evaluated round, each task on its "
        "own main metric, the mean over clients; mean ± std over seeds"
    )
    panels = sorted(
        {
            (str(s), str(t), str(m))
            for s, t, m in final[["split", "task", "metric"]].itertuples(False)
        },
        key=lambda p: (p[0] != "local", p[1]),
    )

    def final_figure(split: str, task: str, metric: str) -> go.Figure:
        rows = final[(final["split"] == split) & (final["task"] == task)]
        direction = "" if higher_is_better(metric, catalog) else " (lower is better)"
        title = f"{task} · {study.SPLITS[split]}"
        figures[title] = study_charts.against_pairs_figure(
            rows, title=title, y_title=f"{metric}{direction}", colors=algorithm_colors
        )
        return figures[title]

    ui.chart_grid(panels, final_figure)

st.subheader("Table")
table = study.study_table(reached, final)
st.dataframe(table, hide_index=True, key="study_table")

st.divider()
st.subheader("Export")
name = f"study-{group}"
table_downloads(
    table,
    name,
    f"Modality-task-pair study: rounds to a training loss of at most {threshold:.4g} "
    "(seeds that reach it / seeds) and final values, mean ± std over seeds",
)
# The study's charts are plotly already: the export takes them as they are drawn.
figure_downloads(
    {
        title: LazyFigure(spec=figure.to_plotly_json(), build=lambda figure=figure: figure)
        for title, figure in figures.items()
    },
    name,
)
