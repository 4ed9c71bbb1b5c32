"""Runs: every run, newest first, with live progress; filter and search them, select rows
to open, cancel or retry them. The table refreshes on its own while a run is active."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from backend.client import ApiError
from backend.client.types import RUN_STATUSES, Run
from dashboard import data, signin, ui

PAGE_SIZE = 50
RECENT = 500  # the search and the algorithm/owner/preset filters look at this many runs
CANCELLABLE = frozenset({"queued", "running"})
RETRYABLE = frozenset({"failed", "cancelled"})
NOTE_S = 20  # how long what an action did stays above the table (which refreshes itself)


def owner_of(run: Run, owners: dict[int, str]) -> str:
    return run.get("owner") or owners.get(run["experiment_id"], "")


def runs_frame(runs: list[Run], owners: dict[int, str] | None = None) -> pd.DataFrame:
    """One table row per run; the first column is a link to the run's page."""
    owners = owners or {}
    return pd.DataFrame(
        {
            "run": [f"run?run={run['id']}" for run in runs],
            "experiment": [
                run.get("experiment_name") or f"#{run['experiment_id']}" for run in runs
            ],
            "owner": [owner_of(run, owners) for run in runs],
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


# Widths in pixels that fit the table, headers whole, in the main area of a 1440 px screen
# next to the sidebar (about 975 px with the row markers); longer values are cut, not names.
COLUMNS = {
    "run": st.column_config.LinkColumn("run", display_text=r"run=(\d+)", width=60),
    "experiment": st.column_config.TextColumn("experiment", width=130),
    "owner": st.column_config.TextColumn("owner", width=70),
    "preset": st.column_config.TextColumn("preset", width=70),
    "algorithm": st.column_config.TextColumn("algorithm", width=90),
    "seed": st.column_config.NumberColumn("seed", format="%d", width=50),
    "status": st.column_config.TextColumn("status", width=85),
    "stage": st.column_config.TextColumn("stage", width=55),
    "round": st.column_config.TextColumn("round", width=60),
    "progress": st.column_config.ProgressColumn(
        "progress", min_value=0.0, max_value=1.0, format="percent", width=100
    ),
    "ETA": st.column_config.TextColumn("ETA", width=65),
    "created": st.column_config.DatetimeColumn("created", format="distance", width=95),
}


def matches(run: Run, owner: str, text: str) -> bool:
    """Whether the search text occurs in the run's id, experiment, owner, preset, algorithm,
    seed, status or stage (case-insensitive; every word must occur somewhere)."""
    haystack = " ".join(
        str(part)
        for part in (
            f"#{run['id']}",
            run.get("experiment_name") or "",
            owner,
            run.get("preset") or "",
            run["algorithm"],
            f"seed {run['seed']}",
            run["status"],
            run.get("stage") or "",
        )
    ).lower()
    return all(word in haystack for word in text.lower().split())


def narrow(
    runs: list[Run],
    owners: dict[int, str],
    *,
    text: str,
    algorithms: list[str],
    owner_names: list[str],
    presets: list[str],
) -> list[Run]:
    return [
        run
        for run in runs
        if (not algorithms or run["algorithm"] in algorithms)
        and (not owner_names or owner_of(run, owners) in owner_names)
        and (not presets or (run.get("preset") or "") in presets)
        and (not text or matches(run, owner_of(run, owners), text))
    ]


def act_on(runs: list[Run], action: str) -> None:
    """Cancel or retry each run; say which the API refused and why."""
    client = data.api()
    call = client.cancel_run if action == "cancel" else client.retry_run
    refused = []
    for run in runs:
        try:
            call(run["id"])
        except ApiError as err:
            refused.append(f"#{run['id']}: {err.message}")
    data.forget_runs()
    st.session_state["runs_action_note"] = (
        time.monotonic(),
        (action, len(runs) - len(refused), refused),
    )
    st.rerun()


def action_bar(chosen: list[Run]) -> None:
    """What can be done with the selected rows: open one, cancel or retry several."""
    with ui.api_errors():
        owners = data.owners()
    mine = [run for run in chosen if signin.may_change(owner_of(run, owners))]
    cancellable = [run for run in mine if run["status"] in CANCELLABLE]
    retryable = [run for run in mine if run["status"] in RETRYABLE]
    open_col, cancel_col, retry_col, _ = st.columns([2, 2, 2, 4], vertical_alignment="center")
    with open_col:
        if len(chosen) == 1:
            st.page_link(
                ui.RUN_PAGE,
                label=f"Open run #{chosen[0]['id']}",
                icon=":material/monitoring:",
                query_params={"run": str(chosen[0]["id"])},
            )
        else:
            st.caption(f"{len(chosen)} runs selected")
        if len(mine) < len(chosen):
            st.caption(
                f"{len(chosen) - len(mine)} of them belong to other users: only their owner "
                "or an admin may cancel or retry them"
            )
    with cancel_col:
        if st.button(
            f"Cancel ({len(cancellable)})",
            icon=":material/stop_circle:",
            disabled=not cancellable,
            key="runs_cancel",
            help="queued runs stop at once; running ones after their current step (asks first)",
        ):
            ui.ask_to_confirm("runs_cancel", [run["id"] for run in cancellable])
    with retry_col:
        if st.button(
            f"Retry ({len(retryable)})",
            icon=":material/replay:",
            disabled=not retryable,
            key="runs_retry",
            help="failed or cancelled runs are queued again and resume from their checkpoint",
        ):
            act_on(retryable, "retry")
    to_cancel = ui.confirmed(
        "runs_cancel",
        cancel_question,
        confirm="Confirm cancel",
        keep="Keep them",
    )
    if to_cancel:
        act_on([run for run in chosen if run["id"] in to_cancel], "cancel")


def cancel_question(run_ids: list[int]) -> str:
    runs = ", ".join(f"#{run_id}" for run_id in run_ids)
    noun = "run" if len(run_ids) == 1 else "runs"
    return (
        f"Cancel {len(run_ids)} {noun} ({runs})? Queued runs stop at once, running ones "
        "after their current step; retry resumes them from their checkpoint."
    )


def show_action_note() -> None:
    stamped = st.session_state.get("runs_action_note")
    if not stamped or time.monotonic() - stamped[0] > NOTE_S:
        st.session_state.pop("runs_action_note", None)
        return
    action, done, refused = stamped[1]
    verb = "cancelled" if action == "cancel" else "queued again"
    if done:
        st.success(f"{done} run{'s' if done != 1 else ''} {verb}.", icon=":material/check:")
    for line in refused:
        st.warning(f"Not {verb}: {line}", icon=":material/block:")


def runs_table(status: str | None, filters: dict, page_number: int, live: bool) -> None:
    """The table itself; a fragment that reruns on its own while runs are active."""
    with ui.api_errors():
        recent = data.runs(status=status, limit=RECENT)
        owners = data.owners()
    runs = narrow(recent["items"], owners, **filters)
    if not runs:
        if any(filters.values()) or status:
            st.info("No run matches these filters.", icon=":material/filter_alt_off:")
        else:
            st.info("No runs here yet. Start one on the **Submit** page.", icon=":material/inbox:")
            st.page_link(ui.SUBMIT_PAGE, label="Submit an experiment", icon=":material/add_circle:")
        return
    pages = max((len(runs) + PAGE_SIZE - 1) // PAGE_SIZE, 1)
    offset = (min(page_number, pages) - 1) * PAGE_SIZE
    shown = runs[offset : offset + PAGE_SIZE]

    show_action_note()
    picked = st.dataframe(
        runs_frame(shown, owners).style.map(ui.status_cell_style, subset=["status"]),
        column_config=COLUMNS,
        hide_index=True,
        on_select="rerun",
        selection_mode="multi-row",
        key="runs_table",
    )
    chosen = [shown[i] for i in picked.selection.rows if i < len(shown)]
    if chosen:
        action_bar(chosen)

    of = f"{offset + 1}-{offset + len(shown)} of {len(runs)} runs"
    if recent["total"] > len(recent["items"]):
        of += f" (searching the newest {len(recent['items'])} of {recent['total']})"
    refresh = ui.LIVE_REFRESH_S if live else ui.IDLE_REFRESH_S
    st.caption(f"{of} · select rows to open, cancel or retry them · refreshes every {refresh} s")

    # A run started or finished since the page was drawn: rerun the whole page so the
    # refresh interval (fast while something is active) follows.
    if any(ui.is_active(run) for run in shown) != live:
        st.rerun()


st.title("Runs")

status_col, search_col = st.columns([3, 2], vertical_alignment="bottom")
with status_col:
    chosen_status = st.segmented_control(
        "Status", ["all", *RUN_STATUSES], default="all", key="runs_status"
    )
with search_col:
    search = st.text_input(
        "Search",
        placeholder="experiment, owner, algorithm, #id, seed …",
        key="runs_search",
    )
status = None if chosen_status in (None, "all") else chosen_status

with ui.api_errors():
    everything = data.runs(status=status, limit=RECENT)
    known_owners = data.owners()
items = everything["items"]
algorithm_col, owner_col, preset_col, page_col = st.columns([3, 3, 3, 1])
with algorithm_col:
    algorithms = st.multiselect(
        "Algorithm", sorted({run["algorithm"] for run in items}), key="runs_algorithms"
    )
with owner_col:
    owner_names = st.multiselect(
        "Owner",
        sorted({owner_of(run, known_owners) for run in items} - {""}),
        key="runs_owners",
    )
with preset_col:
    presets = st.multiselect(
        "Preset", sorted({run.get("preset") or "" for run in items} - {""}), key="runs_presets"
    )
filters = {
    "text": search.strip(),
    "algorithms": algorithms,
    "owner_names": owner_names,
    "presets": presets,
}
matching = narrow(items, known_owners, **filters)
pages = max((len(matching) + PAGE_SIZE - 1) // PAGE_SIZE, 1)
with page_col:
    page_number = (
        st.number_input("Page", min_value=1, max_value=pages, value=1, step=1) if pages > 1 else 1
    )

live = any(ui.is_active(run) for run in matching[(int(page_number) - 1) * PAGE_SIZE :][:PAGE_SIZE])
st.fragment(runs_table, run_every=ui.LIVE_REFRESH_S if live else ui.IDLE_REFRESH_S)(
    status, filters, int(page_number), live
)
