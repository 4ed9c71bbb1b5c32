"""Cached reads for the pages: thin ``st.cache_data`` wrappers over ``backend.client``.

Every cached function takes the API's base URL and token as its first arguments, so two
dashboards in one process (or two tests) pointed at different APIs never share an entry.
Live data is cached for a couple of seconds only: long enough that one page render with
several panels asks the API once, short enough that a live panel shows fresh numbers.
Errors are never cached (Streamlit re-raises them), so a page recovers as soon as the API
is back.

A run's rows (metrics, facets, losses, steps, replacements, logs) are cached under the
run's id *and* its status, attempt and finish time: pass the run as just fetched, and a
retried run that has since succeeded (or one that started, failed, …) is read afresh
instead of showing what its previous state left in the cache.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from backend.client import TapflClient, api_url_from_env
from backend.client.types import (
    ACTIVE_STATUSES,
    Catalog,
    Comparison,
    ExperimentPreview,
    Health,
    LogPage,
    Preset,
    Run,
    RunPage,
)
from dashboard import signin

LIVE_TTL_S = 2  # runs and metrics that may still change
FINISHED_TTL_S = 600  # a finished run's numbers never change
FACETS_LIVE_TTL_S = 30  # which metrics/clients a live run has changes rarely
PRESETS_TTL_S = 300
CATALOG_TTL_S = 300  # changes only when the server restarts with other plugins
REQUEST_TIMEOUT_S = 10.0
COMPARE_TTL_S = 10  # a sweep's aggregates change as its runs finish
OWNERS_TTL_S = 30
PREVIEW_TTL_S = 60  # a preview depends only on the body and the server's presets

METRIC_COLUMNS = ["round", "stage", "client", "task", "model", "split", "metric", "value"]
LOSS_COLUMNS = ["round", "stage", "client", "model", "task", "loss", "steps"]
STEP_COLUMNS = [
    "round",
    "stage",
    "client",
    "model",
    "step",
    "micro_batches",
    "term",
    "task",
    "value",
]
REPLACEMENT_COLUMNS = [
    "round",
    "client",
    "task",
    "global_loss",
    "personal_loss",
    "margin",
    "parameters_copied",
]


def target() -> tuple[str, str]:
    """(base URL, the signed-in user's token): the URL from the environment, read on every
    rerun so tests can switch; the token from this browser session's sign-in."""
    return api_url_from_env(), signin.token()


def api() -> TapflClient:
    """The client for writes (never cached data) and anything uncached."""
    return _client(*target())


@st.cache_resource(show_spinner=False)
def _client(base_url: str, token: str) -> TapflClient:
    # One connection pool per API and token for the life of the server process.
    return TapflClient(base_url, token, timeout=REQUEST_TIMEOUT_S)


# -- service ----------------------------------------------------------------------------


def health() -> Health:
    return _health(target()[0])


@st.cache_data(ttl=5, show_spinner=False)
def _health(base_url: str) -> Health:
    return _client(base_url, "").health()


def presets() -> list[Preset]:
    return _presets(*target())


@st.cache_data(ttl=PRESETS_TTL_S, show_spinner=False)
def _presets(base_url: str, token: str) -> list[Preset]:
    return _client(base_url, token).presets()


def catalog() -> Catalog:
    """Algorithms (descriptions, colours), task families, metrics and preset defaults."""
    return _catalog(*target())


@st.cache_data(ttl=CATALOG_TTL_S, show_spinner=False)
def _catalog(base_url: str, token: str) -> Catalog:
    return _client(base_url, token).catalog()


def preset_config(name: str) -> dict[str, Any]:
    """The preset's resolved config: every field a submission can override."""
    return _preset_config(*target(), name)


@st.cache_data(ttl=PRESETS_TTL_S, show_spinner=False)
def _preset_config(base_url: str, token: str, name: str) -> dict[str, Any]:
    return _client(base_url, token).preset(name)


def preview(preset: str, **body: Any) -> ExperimentPreview:
    """What submitting ``preset`` with ``body`` (name, algorithm, overrides, sweep) would
    queue; a 422 (``ApiError``) names what is wrong, as the submission would."""
    return _preview(*target(), json.dumps({"preset": preset, **body}, sort_keys=True))


@st.cache_data(ttl=PREVIEW_TTL_S, show_spinner=False)
def _preview(base_url: str, token: str, body: str) -> ExperimentPreview:
    return _client(base_url, token).preview(**json.loads(body))


# -- runs -------------------------------------------------------------------------------


def runs(
    *,
    status: str | None = None,
    experiment_id: int | None = None,
    group_id: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> RunPage:
    return _runs(*target(), status, experiment_id, group_id, limit, offset)


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def _runs(
    base_url: str,
    token: str,
    status: str | None,
    experiment_id: int | None,
    group_id: str | None,
    limit: int,
    offset: int,
) -> RunPage:
    return _client(base_url, token).runs(
        status=status, experiment_id=experiment_id, group_id=group_id, limit=limit, offset=offset
    )


def owners() -> dict[int, str]:
    """experiment id -> owner name, for the newest experiments (runs do not carry it)."""
    return _owners(*target())


@st.cache_data(ttl=OWNERS_TTL_S, show_spinner=False)
def _owners(base_url: str, token: str) -> dict[int, str]:
    page = _client(base_url, token).experiments(limit=500)
    return {e["id"]: e.get("owner") or "" for e in page["items"]}


def run(run_id: int) -> Run:
    return _run(*target(), run_id)


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def _run(base_url: str, token: str, run_id: int) -> Run:
    return _client(base_url, token).run(run_id)


def forget_runs() -> None:
    """Drop cached run listings, e.g. right after submitting or cancelling."""
    _runs.clear()
    _run.clear()


RunVersion = tuple[str, int, str | None]


def _versioned(run: Run | int, live: bool | None) -> tuple[int, RunVersion, bool]:
    """(id, (status, attempt, finished_at), live) of a run, or of a run id (then fetched,
    cached for ``LIVE_TTL_S``): the key under which its rows are cached."""
    if isinstance(run, int):
        run = _run(*target(), run)
    version = (run["status"], int(run.get("attempt") or 0), run.get("finished_at"))
    return run["id"], version, run["status"] in ACTIVE_STATUSES if live is None else live


# -- metrics and losses -------------------------------------------------------------------


def metrics(run: Run | int, *, live: bool | None = None, **filters: Any) -> pd.DataFrame:
    """One row per evaluation, filtered by the API (client, task, model, split, metric, …).
    ``live`` (default: whether the run is active) picks the short cache."""
    run_id, version, live = _versioned(run, live)
    fetch = _metrics_live if live else _metrics_finished
    return fetch(*target(), run_id, version, tuple(sorted(filters.items())))


def _metrics_frame(base_url: str, token: str, run_id: int, filters: tuple) -> pd.DataFrame:
    rows = _client(base_url, token).metrics(run_id, **dict(filters))
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def _metrics_live(
    base_url: str, token: str, run_id: int, version: RunVersion, filters: tuple
) -> pd.DataFrame:
    return _metrics_frame(base_url, token, run_id, filters)


@st.cache_data(ttl=FINISHED_TTL_S, show_spinner=False)
def _metrics_finished(
    base_url: str, token: str, run_id: int, version: RunVersion, filters: tuple
) -> pd.DataFrame:
    return _metrics_frame(base_url, token, run_id, filters)


def metric_facets(
    run: Run | int, *, live: bool | None = None, first_rounds: int | None = None
) -> dict[str, Any]:
    """The values a run's metrics take per column (metric names, clients, tasks, …).

    The API has no facets endpoint. Every evaluation round reports the same series, so
    the first ``first_rounds`` rounds (the run's ``eval_every``) plus the post-FL stage
    (where the final models appear) name them all, at a small fraction of the rows of a
    long run. Without ``first_rounds`` the whole run is read. While the run is live this
    is refreshed every ``FACETS_LIVE_TTL_S`` seconds, less often than the charts' data.
    """
    run_id, version, live = _versioned(run, live)
    fetch = _facets_live if live else _facets_finished
    return fetch(*target(), run_id, version, first_rounds)


def _facets(base_url: str, token: str, run_id: int, first_rounds: int | None) -> dict[str, Any]:
    if first_rounds is None:
        frame = _metrics_frame(base_url, token, run_id, ())
    else:
        early = _metrics_frame(base_url, token, run_id, (("round_max", first_rounds),))
        post = _metrics_frame(base_url, token, run_id, (("stage", "post"),))
        frame = pd.concat([early, post], ignore_index=True)
    facets: dict[str, Any] = {
        column: sorted(frame[column].dropna().unique().tolist())
        for column in ("metric", "stage", "client", "task", "model", "split")
    }
    # Classification and generation tasks report different metrics (accuracy vs mse).
    facets["task_metrics"] = {
        task: sorted(group.unique().tolist()) for task, group in frame.groupby("task")["metric"]
    }
    return facets


def merge_facets(many: list[dict[str, Any]]) -> dict[str, Any]:
    """The facets of several runs together: every value any of them takes."""
    merged: dict[str, Any] = {"metric": [], "task_metrics": {}}
    for facets in many:
        for column, values in facets.items():
            if column == "task_metrics":
                for task, metrics in values.items():
                    known = merged["task_metrics"].get(task, [])
                    merged["task_metrics"][task] = sorted({*known, *metrics})
            else:
                merged[column] = sorted({*merged.get(column, []), *values})
    return merged


@st.cache_data(ttl=FACETS_LIVE_TTL_S, show_spinner=False)
def _facets_live(
    base_url: str, token: str, run_id: int, version: RunVersion, first_rounds: int | None
) -> dict[str, Any]:
    return _facets(base_url, token, run_id, first_rounds)


@st.cache_data(ttl=FINISHED_TTL_S, show_spinner=False)
def _facets_finished(
    base_url: str, token: str, run_id: int, version: RunVersion, first_rounds: int | None
) -> dict[str, Any]:
    return _facets(base_url, token, run_id, first_rounds)


def losses(run: Run | int, *, live: bool | None = None, **filters: Any) -> pd.DataFrame:
    """Mean local-training loss per round, client, model and task (``client=`` etc. filter
    on the server)."""
    run_id, version, live = _versioned(run, live)
    fetch = _losses_live if live else _losses_finished
    return fetch(*target(), run_id, version, tuple(sorted(filters.items())))


def _losses_frame(base_url: str, token: str, run_id: int, filters: tuple) -> pd.DataFrame:
    rows = _client(base_url, token).losses(run_id, **dict(filters))
    return pd.DataFrame(rows, columns=LOSS_COLUMNS)


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def _losses_live(
    base_url: str, token: str, run_id: int, version: RunVersion, filters: tuple
) -> pd.DataFrame:
    return _losses_frame(base_url, token, run_id, filters)


@st.cache_data(ttl=FINISHED_TTL_S, show_spinner=False)
def _losses_finished(
    base_url: str, token: str, run_id: int, version: RunVersion, filters: tuple
) -> pd.DataFrame:
    return _losses_frame(base_url, token, run_id, filters)


def steps(run: Run | int, *, live: bool | None = None, **filters: Any) -> pd.DataFrame:
    """Stage 2 step by step: a row per optimizer step, model, term and task (``client=``
    etc. filter on the server)."""
    run_id, version, live = _versioned(run, live)
    fetch = _steps_live if live else _steps_finished
    return fetch(*target(), run_id, version, tuple(sorted(filters.items())))


def _steps_frame(base_url: str, token: str, run_id: int, filters: tuple) -> pd.DataFrame:
    rows = _client(base_url, token).steps(run_id, **dict(filters))
    return pd.DataFrame(rows, columns=STEP_COLUMNS)


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def _steps_live(
    base_url: str, token: str, run_id: int, version: RunVersion, filters: tuple
) -> pd.DataFrame:
    return _steps_frame(base_url, token, run_id, filters)


@st.cache_data(ttl=FINISHED_TTL_S, show_spinner=False)
def _steps_finished(
    base_url: str, token: str, run_id: int, version: RunVersion, filters: tuple
) -> pd.DataFrame:
    return _steps_frame(base_url, token, run_id, filters)


def replacements(run: Run | int, *, live: bool | None = None) -> pd.DataFrame:
    """TAP's replacement events as a frame, every page of them."""
    run_id, version, live = _versioned(run, live)
    fetch = _replacements_live if live else _replacements_finished
    return fetch(*target(), run_id, version)


def _replacements_frame(base_url: str, token: str, run_id: int) -> pd.DataFrame:
    rows = _client(base_url, token).replacements(run_id)
    return pd.DataFrame(rows, columns=REPLACEMENT_COLUMNS)


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def _replacements_live(base_url: str, token: str, run_id: int, version: RunVersion) -> pd.DataFrame:
    return _replacements_frame(base_url, token, run_id)


@st.cache_data(ttl=FINISHED_TTL_S, show_spinner=False)
def _replacements_finished(
    base_url: str, token: str, run_id: int, version: RunVersion
) -> pd.DataFrame:
    return _replacements_frame(base_url, token, run_id)


def logs(run: Run | int, *, level: str | None = None, limit: int = 500) -> LogPage:
    """The run's newest ``limit`` log lines at ``level`` or above (as the API filters)."""
    run_id, version, _ = _versioned(run, None)
    return _logs(*target(), run_id, version, level, limit)


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def _logs(
    base_url: str, token: str, run_id: int, version: RunVersion, level: str | None, limit: int
) -> LogPage:
    client = _client(base_url, token)
    first = client.logs(run_id, limit=1, level=level)
    # The API pages from the oldest line; skip to the newest ``limit`` ones.
    skip, after = max(first["total"] - limit, 0), 0
    while skip > 0:
        head = client.logs(run_id, after=after, limit=min(skip, 10_000), level=level)
        if not head["items"]:
            break
        after, skip = head["items"][-1]["seq"], skip - len(head["items"])
    return client.logs(run_id, after=after, limit=limit, level=level)


def logs_text(run_id: int) -> str:
    """Not cached: only fetched when someone clicks the download button."""
    return api().logs_text(run_id)


# -- compare ----------------------------------------------------------------------------


def compare(
    *,
    metric: str,
    runs: tuple[int, ...] = (),
    group: str | None = None,
    split: str = "local",
    model: str = "personal",
) -> Comparison:
    return _compare(*target(), metric, runs, group, split, model)


@st.cache_data(ttl=COMPARE_TTL_S, show_spinner=False)
def _compare(
    base_url: str,
    token: str,
    metric: str,
    runs: tuple[int, ...],
    group: str | None,
    split: str,
    model: str,
) -> Comparison:
    return _client(base_url, token).compare(
        metric=metric, runs=list(runs) or None, group=group, split=split, model=model
    )


def metrics_csv(run_id: int, **filters: Any) -> bytes:
    """Not cached: only fetched when someone clicks the download button."""
    return api().metrics_csv(run_id, **filters)
