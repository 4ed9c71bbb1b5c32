"""Runs: every run, newest first, with live progress; select a row to open the run."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data, ui
from dashboard.client import RUN_STATUSES, Run

PAGE_SIZE = 50


def runs_frame(runs: list[Run]) -> pd.DataFrame:
    """One table row per run; the first column is a link to the run's page."""
    return pd.DataFrame(
        {
            "run": [f"run?run={run['id']}" for run in runs],
            "experiment": [
                run.get("experiment_name") or f"#{run['experiment_id']}" for run in runs
            ],
            "preset": [run.get("preset") or "" for run in runs],
            "algorithm": [run["algorithm"] for run in runs],
            "seed": [run["seed"] for run in runs],
            "status": [run["status"] for run in runs],
            "stage": [run.get("stage") or "" for run in runs],
            "round": [ui.format_round(run) for run in runs],
            "progress": [ui.progress_of(run) for run in runs],
            "ETA": [ui.format_eta(run.get("eta_s")) if ui.is_active(run) else "" for run in runs],
            "created": pd.to_datetime([run["created_at"] for run in runs], utc=True),
        }
    )


COLUMNS = {
    "run": st.column_config.LinkColumn("run", display_text=r"run=(\d+)", width="small"),
    "seed": st.column_config.NumberColumn("seed", format="%d", width="small"),
    "round": st.column_config.TextColumn("round", width="small"),
    "progress": st.column_config.ProgressColumn(
        "progress", min_value=0.0, max_value=1.0, format="percent"
    ),
    "created": st.column_config.DatetimeColumn("created", format="distance"),
}


def runs_table(status: str | None, offset: int, live: bool) -> None:
    """The table itself; a fragment that reruns on its own while runs are active."""
    with ui.api_errors():
        page = data.runs(status=status, limit=PAGE_SIZE, offset=offset)
    runs = page["items"]
    if not runs:
        st.info("No runs here yet. Start one on the **Submit** page.", icon=":material/inbox:")
        st.page_link(ui.SUBMIT_PAGE, label="Submit an experiment", icon=":material/add_circle:")
        return

    picked = st.dataframe(
        runs_frame(runs).style.map(ui.status_cell_style, subset=["status"]),
        column_config=COLUMNS,
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key="runs_table",
    )
    if picked.selection.rows:
        chosen = runs[picked.selection.rows[0]]
        st.switch_page(ui.RUN_PAGE, query_params={"run": str(chosen["id"])})

    shown = f"{offset + 1}-{offset + len(runs)} of {page['total']} runs"
    refresh = ui.LIVE_REFRESH_S if live else ui.IDLE_REFRESH_S
    st.caption(f"{shown} · select a row to open it · refreshes every {refresh} s")

    # A run started or finished since the page was drawn: rerun the whole page so the
    # refresh interval (fast while something is active) follows.
    if any(ui.is_active(run) for run in runs) != live:
        st.rerun()


st.title("Runs")

filter_col, page_col = st.columns([4, 1], vertical_alignment="bottom")
with filter_col:
    chosen_status = st.segmented_control(
        "Status", ["all", *RUN_STATUSES], default="all", key="runs_status"
    )
status = None if chosen_status in (None, "all") else chosen_status

with ui.api_errors():
    first = data.runs(status=status, limit=PAGE_SIZE, offset=0)
pages = max((first["total"] + PAGE_SIZE - 1) // PAGE_SIZE, 1)
with page_col:
    page_number = (
        st.number_input("Page", min_value=1, max_value=pages, value=1, step=1) if pages > 1 else 1
    )
offset = (int(page_number) - 1) * PAGE_SIZE

with ui.api_errors():
    shown = first if offset == 0 else data.runs(status=status, limit=PAGE_SIZE, offset=offset)
live = any(ui.is_active(run) for run in shown["items"])
st.fragment(runs_table, run_every=ui.LIVE_REFRESH_S if live else ui.IDLE_REFRESH_S)(
    status, offset, live
)
