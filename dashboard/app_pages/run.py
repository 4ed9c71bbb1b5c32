"""Run: one run's progress, what personalization bought and cost per client and task,
per-client personalization and generalization curves, training losses, stage 2 step by step
and config. The run comes from ``?run=ID`` (so the page is a link to share) or the picker at
the top; everything below it refreshes on its own while the run is active.

What the first look needs is drawn at once; the details (replacement events, training
losses, stage-2 steps) are built only when their expander is opened, since every plotly
chart costs the browser a noticeable fraction of a second. The curves are Vega-Lite specs:
the first view loads no plotly.js (4.6 MB).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from backend.client import ApiError
from backend.client.types import Catalog, Run
from dashboard import (
    data,
    personalization,
    run_charts,
    static_chart,
    traffic,
    traffic_charts,
    ui,
    vega,
)
from dashboard.markdown_table import markdown_table
from dashboard.ui import MAIN, SPLIT_LABELS

LOG_LINES = 300
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def pick_run() -> int | None:
    """The run picker, kept in step with ``?run=ID`` in both directions."""
    wanted = linked_run()
    with ui.api_errors():
        recent = data.runs(limit=100)["items"]
    labels = {run["id"]: ui.run_label(run) for run in recent}
    if wanted is not None:
        labels.setdefault(wanted, f"#{wanted}")  # an older run, beyond the recent ones
        st.session_state["run_pick"] = wanted
    if not labels:
        return None

    def follow_pick() -> None:
        st.query_params["run"] = str(st.session_state["run_pick"])

    chosen: int = st.selectbox(
        "Run",
        list(labels),
        format_func=lambda run_id: labels[run_id],
        key="run_pick",
        on_change=follow_pick,
    )
    st.query_params["run"] = str(chosen)
    return chosen


def linked_run() -> int | None:
    """The run ``?run=`` names, if any; a link that names no run stops the page with an
    error that says so, instead of showing some other run."""
    raw = st.query_params.get("run")
    if raw is None:
        return None
    try:
        run_id = int(raw)
    except ValueError:
        run_id = 0
    if run_id < 1:
        bad_link(
            f"**`run={raw}` is not a run id.** The link should end in `?run=` and a run's "
            "number, such as `/run?run=12`."
        )
    try:
        data.run(run_id)
    except ApiError as err:
        if err.status != 404:
            ui.show_api_error(err)
            st.stop()
        bad_link(f"**There is no run #{run_id}** ({err.message}). The link may be mistyped.")
    return run_id


def bad_link(message: str) -> None:
    st.title("Run")
    st.error(message, icon=":material/link_off:")
    st.page_link(ui.RUNS_PAGE, label="Pick a run on the Runs page", icon=":material/list:")
    st.stop()


# -- the live part of the page, top to bottom ------------------------------------------------


def run_view(run_id: int, live: bool) -> None:
    with ui.api_errors():
        run = data.run(run_id)
    header(run)
    # Started or finished since the page was drawn: redraw all of it, which also turns
    # the live refresh on or off.
    if ui.is_active(run) != live:
        st.rerun()

    st.divider()
    # The run as just fetched keys every cached read below: a new status or attempt reads
    # its rows afresh.
    clients, stages = curves(run_id, run)
    training_losses(run, clients)
    communication(run)
    if "post" in stages:
        stage_two_steps(run, clients)
    config = lazy_expander("Config", f"config_{run_id}", ":material/tune:")
    with config:
        if config.open:
            st.json(run.get("config") or {}, expanded=2)
    logs(run)


def header(run: Run) -> None:
    name = run.get("experiment_name") or f"experiment #{run['experiment_id']}"
    st.title(f"Run #{run['id']} · {name}")
    st.caption(
        " · ".join(
            part
            for part in (
                f"preset **{run['preset']}**" if run.get("preset") else "",
                f"algorithm **{run['algorithm']}**",
                f"seed **{run['seed']}**",
            )
            if part
        )
    )

    badge_col, progress_col, action_col = st.columns([1, 6, 1], vertical_alignment="center")
    with badge_col:
        ui.status_badge(run["status"])
    with progress_col:
        eta = ui.format_eta(run.get("eta_s")) if ui.is_active(run) else ""
        text = " · ".join(
            part
            for part in (
                run.get("stage") or "",
                f"round {ui.format_round(run)}",
                f"ETA {eta}" if eta else "",
            )
            if part
        )
        st.progress(ui.progress_of(run), text=text)
    with action_col:
        actions(run)
    cancel_confirmation(run)

    st.caption(timeline(run))
    if run.get("group_id"):
        st.page_link(
            ui.COMPARE_PAGE,
            label="Compare with the other runs of its sweep",
            icon=":material/compare:",
            query_params={"group": str(run["group_id"])},
        )

    if run.get("error"):
        st.error(f"**The run {run['status']}:**", icon=":material/error:")
        st.code(run["error"], language=None, wrap_lines=True)


def actions(run: Run) -> None:
    """Cancel an active run, retry one that failed or was cancelled."""
    act = None
    if run["status"] in ("queued", "running"):
        if st.button("Cancel", icon=":material/stop_circle:", key=f"cancel_{run['id']}"):
            ui.ask_to_confirm(f"cancel_{run['id']}", run["id"])
    elif run["status"] in ("failed", "cancelled") and st.button(
        "Retry", icon=":material/replay:", key=f"retry_{run['id']}"
    ):
        act = data.api().retry_run
    if act is not None:
        perform(run, act)


def cancel_confirmation(run: Run) -> None:
    """Below the header, at full width: the question the Cancel button asks first."""
    if ui.confirmed(
        f"cancel_{run['id']}",
        lambda run_id: (
            f"Cancel run #{run_id}? It stops after its current step; retry "
            "resumes it from its checkpoint."
        ),
        confirm="Confirm cancel",
        keep="Keep it running",
    ):
        perform(run, data.api().cancel_run)


def perform(run: Run, act: Callable[[int], Any]) -> None:
    try:
        act(run["id"])
    except ApiError as err:
        ui.show_api_error(err)
        return
    data.forget_runs()
    st.rerun()


def lazy_expander(label: str, key: str, icon: str) -> Any:
    """An expander whose content the caller builds only while it is ``.open`` (it reruns
    the page when opened): nothing of it is fetched or drawn on the first load."""
    return st.expander(label, key=key, icon=icon, on_change="rerun")


def curves(run_id: int, run: Run) -> tuple[list[int] | None, list[str]]:
    """What personalization bought and cost, then the small multiples; returns the
    clients shown (None for all of them: the loss charts follow the curves' page of
    clients) and the run's stages."""
    st.subheader("Personalization and generalization")
    cap = (run.get("config") or {}).get("eval_max_samples")
    if cap:  # the engine reads the full sets only in the last round and stage 2
        st.caption(
            f"Rounds before the last were evaluated on {cap} random examples per set "
            "(the same ones every round); the last round and stage 2 on the full sets."
        )
    with ui.api_errors():
        facets = data.metric_facets(run, first_rounds=ui.first_eval_round(run))
        catalog = data.catalog()
    if not facets["metric"]:
        st.info(
            "No evaluations yet: the curves appear after the first evaluation round.",
            icon=":material/hourglass_top:",
        )
        return None, []
    bought_and_cost(run, facets, catalog)

    choice, stage, models, splits, clients = curve_controls(run_id, facets, catalog)
    # task -> the metric its charts show: the one picked, or each task's main metric.
    shown = {
        task: choice if choice != MAIN else ui.main_metric(metrics, catalog)
        for task, metrics in facets["task_metrics"].items()
        if choice == MAIN or choice in metrics
    }
    if not shown:
        st.info("No task reports this metric.", icon=":material/filter_alt_off:")
        return None, facets["stage"]
    page_clients = ui.client_page(f"client_page_{run_id}", clients or facets["client"])
    every_client = page_clients == facets["client"]
    server, rest = split_filters(facets, stage, models, splits)
    with ui.api_errors():
        metrics = sorted(set(shown.values()))
        frame = fetch_metrics(run, metrics, server, page_clients, every_client)
        events = data.replacements(run)
    frame = narrow(frame, rest)
    frame = frame[frame["metric"] == frame["task"].map(shown)]  # each task: its own metric
    shown_clients = None if every_client else page_clients
    if frame.empty:
        st.info("No values for this selection.", icon=":material/filter_alt_off:")
        return shown_clients, facets["stage"]

    models = sorted(frame["model"].unique())
    st.vega_lite_chart(legend_spec(models), width="stretch")
    st.caption(legend(models, not events.empty))
    replaced = replacement_rounds(events)
    rounds = run_charts.round_range(frame)  # one x-range for every panel
    ui.chart_grid(
        run_charts.panels(frame),
        lambda client, task: run_charts.metric_spec(
            frame[(frame["client"] == client) & (frame["task"] == task)],
            metric=shown[task],
            title=f"Client {client} · {task}",
            replacement_rounds=replaced.get((client, task)),
            rounds=rounds,
        ),
    )

    replacement_events(run_id, events, page_clients, rounds)

    st.markdown(
        "**Last evaluated value** per client, task and test data; `final` is the stage-2 "
        "model, and `personal-global`, `final-global` are plain differences (for mse and "
        "loss, lower is better: negative is the gain)."
    )
    # A static table: the interactive grid costs the browser 1.2 MB of script to load.
    st.markdown(markdown_table(run_charts.latest_values(frame)))
    st.download_button(
        "Download these metrics (CSV)",
        data=frame.to_csv(index=False),
        file_name=f"run-{run_id}-{choice if choice != MAIN else 'main'}.csv",
        mime="text/csv",
        icon=":material/download:",
        on_click="ignore",
    )
    return shown_clients, facets["stage"]


def bought_and_cost(run: Run, facets: dict[str, Any], catalog: Catalog) -> None:
    """The run's answer at a glance: per client and task, on its main metric, what the
    personalized models gained over the global one on the client's own test data, and what
    they gave up on the task's pooled test data."""
    mains = {
        task: ui.main_metric(metrics, catalog) for task, metrics in facets["task_metrics"].items()
    }
    metrics = sorted(set(mains.values()))
    with ui.api_errors():
        parts = [data.metrics(run, metric=m, **last_rounds(run)) for m in metrics]
    frame = pd.concat(parts, ignore_index=True)
    frame = frame[frame["metric"] == frame["task"].map(mains)]
    higher = {m: personalization.higher_is_better(m, catalog) for m in metrics}
    gained = personalization.gains(frame, higher)
    lower = sorted(m for m, up in higher.items() if not up)
    st.markdown(
        "**What personalization bought, and what it cost**: the last value of each "
        "personalized model (`personal`; `final`, the model after stage 2) minus the global "
        "model's, on each task's main metric. *Bought*: on the client's own test data; "
        "*cost*: on every client's test data of the task (pooled). Positive = better than "
        "the global model"
        + (
            f"; {', '.join(f'`{m}`' for m in lower)} (lower is better, marked ↓) with the sign "
            "flipped so that this holds too."
            if lower
            else "."
        )
    )
    if gained.empty:
        st.caption("No personalized model has values beside the global model's yet.")
        return
    # Drawn on the server: the page's answer is on screen before the browser has loaded
    # Vega for the curves below.
    static_chart.show(
        run_charts.gains_chart(gained),
        key="gains",
        alt="What personalization bought and cost per client and task (the table below)",
    )
    st.markdown(markdown_table(personalization.gains_table(gained)))


def last_rounds(run: Run) -> dict[str, int]:
    """The filter for a run's last evaluation round onwards (and stage 2 after it): an
    evaluation every ``eval_every`` rounds puts the last one within that many rounds of
    the run's round. Without a schedule in the config: every round."""
    every, current = ui.first_eval_round(run), run.get("round")
    if every is None or not current:
        return {}
    return {"round_min": max(int(current) - every, 0)}


def fetch_metrics(
    run: Run,
    metrics: list[str],
    server: dict[str, Any],
    clients: list[int],
    every_client: bool,
) -> pd.DataFrame:
    """The rows to draw, filtered by the API: one request per metric for every client, or
    one per metric and client on a page of a large run (each cached on its own)."""
    if every_client:
        parts = [data.metrics(run, metric=m, **server) for m in metrics]
    else:
        parts = [data.metrics(run, metric=m, client=c, **server) for m in metrics for c in clients]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def replacement_rounds(events: pd.DataFrame) -> dict[tuple[int, str], list[int]]:
    return {
        (int(client), str(task)): sorted(rows["round"].astype(int).tolist())
        for (client, task), rows in events.groupby(["client", "task"])
    }


def replacement_events(
    run_id: int, events: pd.DataFrame, clients: list[int], rounds: tuple[int, int] | None
) -> None:
    """TAP's replacements of the clients shown, on the rounds axis of the curves."""
    shown = events[events["client"].isin(clients)]
    if shown.empty:
        st.caption("No replacement events for these clients.")
        return
    section = lazy_expander(
        f"Replacement events ({len(shown)})", f"replacements_{run_id}", ":material/swap_horiz:"
    )
    with section:
        if not section.open:
            return
        span = rounds or (int(shown["round"].min()), int(shown["round"].max()))
        st.plotly_chart(
            run_charts.replacement_timeline(shown, rounds=span), config={"displayModeBar": False}
        )
        st.dataframe(shown.sort_values(["round", "client"]), hide_index=True)


def curve_controls(
    run_id: int, facets: dict[str, Any], catalog: Catalog
) -> tuple[str, str | None, list[str], list[str], list[int]]:
    metric_col, stage_col, client_col = st.columns([3, 2, 3])
    model_col, split_col = st.columns([3, 5])
    # Keys carry the run and the options: another run, or a model that only just showed
    # up (e.g. "final" after FL), starts from the defaults instead of a stale choice.
    choice, _ = ui.metric_choice(metric_col, facets, catalog, key=f"metric_{run_id}")
    stage = None
    if len(facets["stage"]) > 1:
        stage = stage_col.segmented_control(
            "Stage", ["all", *facets["stage"]], default="all", key=f"stage_{run_id}"
        )
    models = model_col.pills(
        "Models",
        facets["model"],
        selection_mode="multi",
        default=facets["model"],
        format_func=run_charts.model_label,
        key=f"models_{run_id}_{'-'.join(facets['model'])}",
    )
    splits = split_col.pills(
        "Test data",
        facets["split"],
        selection_mode="multi",
        default=facets["split"],
        format_func=lambda split: SPLIT_LABELS.get(split, split),
        key=f"splits_{run_id}_{'-'.join(facets['split'])}",
    )
    clients = client_col.multiselect(
        "Clients", facets["client"], placeholder="all clients", key=f"clients_{run_id}"
    )
    return choice, stage, models or [], splits or [], clients


def split_filters(
    facets: dict[str, Any],
    stage: str | None,
    models: list[str],
    splits: list[str],
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Filters the API can apply (one value each) and those left to apply here (several)."""
    server: dict[str, Any] = {}
    rest: dict[str, list[Any]] = {}
    if stage and stage != "all":
        server["stage"] = stage
    # Nothing picked reads as "all", like an empty filter box.
    for column, picked in (("model", models), ("split", splits)):
        if not picked or set(picked) >= set(facets[column]):
            continue
        if len(picked) == 1:
            server[column] = picked[0]
        else:
            rest[column] = picked
    return server, rest


def narrow(frame: pd.DataFrame, rest: dict[str, list[Any]]) -> pd.DataFrame:
    for column, values in rest.items():
        frame = frame[frame[column].isin(values)]
    return frame


def ranked_models(models: list[str]) -> list[str]:
    return sorted(models, key=lambda m: run_charts._rank(run_charts.MODEL_ORDER, m))


def legend_spec(models: list[str]) -> vega.Spec:
    """The models in their exact chart colours and line styles (a Vega legend: markdown's
    named colours are a handful, the models more)."""
    ranked = ranked_models(models)
    return vega.legend_spec(
        {run_charts.model_label(m): run_charts.model_color(m) for m in ranked},
        dashes={
            run_charts.model_label(m): run_charts.line_dash(m, "local") or "solid" for m in ranked
        },
    )


def legend(models: list[str], replacements: bool = False) -> str:
    return (
        "**━●** solid: local test data (personalization)"
        + " · **╍○** dashed: pooled test data (generalization)"
        + (" · **◆** large: stage-2 final models" if "final" in models else "")
        + (
            " · :gray[**┈┈**] constant answer: the client's most frequent training answer "
            "for every item, the chance level a model has to beat"
            if "constant" in models
            else ""
        )
        + (" · :gray[**▲**] replacement" if replacements else "")
    )


def training_losses(run: Run, clients: list[int] | None) -> None:
    section = lazy_expander(
        "Local training loss", f"losses_{run['id']}", ":material/trending_down:"
    )
    with section:
        if not section.open:
            return
        with ui.api_errors():
            if clients:  # the clients of the curves' page, filtered by the API
                parts = [data.losses(run, client=c) for c in clients]
                frame = pd.concat(parts, ignore_index=True)
            else:
                frame = data.losses(run)
        if frame.empty:
            st.caption("No local training has finished yet.")
            return
        rounds = run_charts.round_range(frame)
        ui.chart_grid(
            [(client,) for client in sorted(frame["client"].unique())],
            lambda client: run_charts.loss_figure(
                frame[frame["client"] == client], title=f"Client {client}", rounds=rounds
            ),
        )


def communication(run: Run) -> None:
    """Bytes of trainable tensors sent per FL round; fetched only while open."""
    section = lazy_expander("Communication", f"traffic_{run['id']}", ":material/swap_vert:")
    with section:
        if not section.open:
            return
        with ui.api_errors():
            frame = traffic.traffic(run)
        if frame.empty:
            st.caption(
                "Nothing sent: local training and stage 2 stay on the clients (or no FL "
                "round has finished yet)."
            )
            return
        sums = frame.groupby("direction")["bytes"].sum()
        st.caption(
            "The trainable tensors (adapters, experts, heads) each participant received and "
            "uploaded; the frozen backbone never travels. Total "
            + " · ".join(f"{d} {sums.get(d, 0) / traffic.MB:,.2f} MB" for d in traffic.DIRECTIONS)
        )
        cumulative = traffic.cumulative(frame)
        st.plotly_chart(
            traffic_charts.run_traffic_figure(cumulative),
            config={"displayModeBar": False},
            key=f"traffic_chart_{run['id']}",
        )


def stage_two_steps(run: Run, clients: list[int] | None) -> None:
    """Per client, the post-FL fine-tunings optimizer step by optimizer step."""
    section = lazy_expander("Stage 2 step by step", f"steps_{run['id']}", ":material/stairs:")
    with section:
        if not section.open:
            return
        with ui.api_errors():
            # the clients of the curves' page, filtered by the API
            parts = [data.steps(run, client=c) for c in clients] if clients else [data.steps(run)]
        found = [part for part in parts if not part.empty]
        if not found:
            st.caption("This run reports no stage-2 optimizer steps.")
            return
        frame = pd.concat(found, ignore_index=True)
        st.caption(
            "Each task's loss per optimizer step of the fine-tunings after FL: TAP's teacher "
            "(`global_ft`, the global model fine-tuned) and student (`final`), or the one "
            "fine-tuned model (`final`) of the other algorithms. "
            "**λ·KD** (pink, crosses) is the distillation term per task as it is added to "
            "the student's loss; the axis is logarithmic because λ·KD is often a thousandth "
            "of a task loss."
        )
        ui.chart_grid(
            [(client,) for client in sorted(frame["client"].unique())],
            lambda client: run_charts.step_figure(
                frame[frame["client"] == client], title=f"Client {client} · stage 2"
            ),
        )


def logs(run: Run) -> None:
    run_id = run["id"]
    # Built once opened: the log request, and the browser's code highlighter (1.5 MB of
    # script), are not part of the first load.
    section = lazy_expander("Logs", f"logs_{run_id}", ":material/article:")
    with section:
        if not section.open:
            return
        level = st.segmented_control("Level", LOG_LEVELS, default="INFO", key=f"log_level_{run_id}")
        with ui.api_errors():
            page = data.logs(run, level=level, limit=LOG_LINES)
        lines = page["items"]
        if not lines:
            st.caption("No log lines at this level.")
        else:
            st.code(
                "\n".join(
                    f"{line['time'][:19]} {line['level']:<7} [{line['source']}] {line['message']}"
                    for line in lines
                ),
                language=None,
                wrap_lines=True,
            )
            more = page["total"] > len(lines)
            st.caption(f"the last {len(lines)} lines" if more else f"{len(lines)} lines")
        st.download_button(
            "Download the whole log",
            data=lambda: data.logs_text(run_id),
            file_name=f"run-{run_id}.log",
            mime="text/plain",
            icon=":material/download:",
            on_click="ignore",
            key=f"log_download_{run_id}",
        )


def timeline(run: Run) -> str:
    """Like: created 2026-01-02 14:02:11 · … · finished … (took 3m 25s) UTC."""
    stamps = {
        label: pd.Timestamp(run[key])
        for label, key in (
            ("created", "created_at"),
            ("started", "started_at"),
            ("finished", "finished_at"),
        )
        if run.get(key)
    }
    # The server cannot know the reader's time zone: show the API's UTC and say so.
    aware = any(stamp.tzinfo is not None for stamp in stamps.values())
    if aware:
        stamps = {label: stamp.tz_convert("UTC") for label, stamp in stamps.items()}
    parts = [f"{label} {stamp:%Y-%m-%d %H:%M:%S}" for label, stamp in stamps.items()]
    if "started" in stamps and "finished" in stamps:
        took = (stamps["finished"] - stamps["started"]).total_seconds()
        parts[-1] += f" (took {ui.format_eta(took)})"
    return " · ".join(parts) + (" UTC" if aware and parts else "")


# -- the page ----------------------------------------------------------------------------------

run_id = pick_run()
if run_id is None:
    st.title("Run")
    st.info("No runs yet. Start one on the **Submit** page.", icon=":material/inbox:")
    st.page_link(ui.SUBMIT_PAGE, label="Submit an experiment", icon=":material/add_circle:")
    st.stop()

with ui.api_errors():
    live = ui.is_active(data.run(run_id))
st.fragment(run_view, run_every=ui.LIVE_REFRESH_S if live else None)(run_id, live)
