"""Small pieces the pages share: status badges, formatting, run labels, the main metric of
a task, friendly API errors and the sidebar's connection panel."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import streamlit as st
from PIL import Image, ImageDraw

from backend.client import ApiError, ApiUnreachable, Unauthorized, api_url_from_env
from backend.client.types import ACTIVE_STATUSES, Catalog, Run
from dashboard import data, static_chart, vega

if TYPE_CHECKING:  # plotly is imported by the sections that draw with it
    import plotly.graph_objects as go

T = TypeVar("T")

LIVE_REFRESH_S = 3  # while something is running, panels refresh this often
IDLE_REFRESH_S = 30  # the runs list still notices runs that other people submit
CLIENTS_PER_PAGE = 9  # small multiples per page (three rows of three)
GRID_COLUMNS = 3
GRID_PANEL_PX = 400  # a panel drawn on the server: about a column at 1600 px, shrunk to fit
MAIN = "__main__"  # metric choice: each task's main metric, so every client gets a chart
SPLIT_LABELS = {"local": "local · personalization", "pooled": "pooled · generalization"}

RUN_PAGE = "app_pages/run.py"
RUNS_PAGE = "app_pages/runs.py"
SUBMIT_PAGE = "app_pages/submit.py"
COMPARE_PAGE = "app_pages/compare.py"
STUDY_PAGE = "app_pages/study.py"

STATUS_COLORS = {
    "queued": "gray",
    "running": "blue",
    "cancelling": "orange",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "violet",
}
STATUS_ICONS = {
    "queued": ":material/schedule:",
    "running": ":material/play_circle:",
    "cancelling": ":material/pending:",
    "succeeded": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/cancel:",
}
# Table cells get a tinted background instead of icons: no emoji font needed.
STATUS_CELL_STYLES = {
    "queued": "background-color: rgba(128, 132, 149, 0.15)",
    "running": "background-color: rgba(28, 131, 225, 0.18)",
    "cancelling": "background-color: rgba(255, 135, 0, 0.18)",
    "succeeded": "background-color: rgba(33, 195, 84, 0.18)",
    "failed": "background-color: rgba(255, 43, 43, 0.18)",
    "cancelled": "background-color: rgba(128, 61, 245, 0.15)",
}


@st.cache_resource(show_spinner=False)
def page_icon() -> Image.Image:
    """The favicon, drawn here: a hub with three clients, in the theme's blue."""
    size, blue = 64, (28, 131, 225, 255)
    icon = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(icon)
    clients = [(12, 14), (52, 14), (32, 54)]
    for x, y in clients:
        draw.line([(32, 30), (x, y)], fill=blue, width=5)
    for x, y in [(32, 30), *clients]:
        radius = 10 if (x, y) == (32, 30) else 7
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=blue)
    return icon


def run_label(run: Run) -> str:
    name = run.get("experiment_name") or f"experiment #{run['experiment_id']}"
    return f"#{run['id']} · {name} · {run['algorithm']} · seed {run['seed']} · {run['status']}"


def first_eval_round(run: Run) -> int | None:
    """The first round with evaluations (the config's ``eval_every``), if the config says."""
    every = (run.get("config") or {}).get("eval_every")
    return int(every) if isinstance(every, int) and every > 0 else None


def main_metric(metrics: list[str], catalog: Catalog) -> str:
    """The metric a task is judged on, among those it reports: the catalog's main metric of
    a task family (never a loss), else its first quality metric, else the first."""
    mains = [m["name"] for m in catalog["metrics"] if m["main_for"]]
    quality = [m["name"] for m in catalog["metrics"] if m["quality"]]
    return next((m for m in (*mains, *quality) if m in metrics), metrics[0])


def metric_choice(
    column: Any, facets: dict[str, Any], catalog: Catalog, key: str
) -> tuple[str, list[str]]:
    """The Metric picker of the Run and Compare pages: a metric, or ``MAIN`` (each task's
    main metric); and the main metrics of the tasks in ``facets``."""
    mains = sorted({main_metric(metrics, catalog) for metrics in facets["task_metrics"].values()})
    choice = column.selectbox(
        "Metric",
        [MAIN, *facets["metric"]],
        format_func=lambda m: f"main metric per task ({', '.join(mains)})" if m == MAIN else m,
        key=key,
    )
    return choice, mains


def is_active(run: Run) -> bool:
    return run["status"] in ACTIVE_STATUSES


def status_badge(status: str) -> None:
    st.badge(status, color=STATUS_COLORS.get(status, "gray"), icon=STATUS_ICONS.get(status))


def status_cell_style(status: str) -> str:
    return STATUS_CELL_STYLES.get(status, "")


def progress_of(run: Run) -> float:
    """The API's progress, else rounds done / rounds planned; 1.0 once succeeded."""
    if run["status"] == "succeeded":
        return 1.0
    progress = run.get("progress")
    if progress is not None:
        return min(max(float(progress), 0.0), 1.0)
    done, total = run.get("round") or 0, run.get("total_rounds") or 0
    return min(done / total, 1.0) if total else 0.0


def format_round(run: Run) -> str:
    total = run.get("total_rounds")
    done = run.get("round")
    if total is None:
        return "-" if done is None else str(done)
    return f"{done or 0}/{total}"


def format_eta(seconds: float | None) -> str:
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return ""
    total_s = max(round(seconds), 0)
    hours, rest = divmod(total_s, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Rows of a grid (``itertools.batched`` arrives only in Python 3.12)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def chart(figure: go.Figure | dict[str, Any], **kwargs: Any) -> None:
    """A Vega-Lite spec (a dict) or a plotly figure, as wide as its column."""
    if isinstance(figure, dict):
        st.vega_lite_chart(figure, width="stretch", **kwargs)
    else:
        st.plotly_chart(figure, config={"displayModeBar": False}, **kwargs)


def chart_grid(
    panels: Sequence[tuple[Any, ...]],
    figure: Callable[..., go.Figure | dict[str, Any]],
    *,
    static_key: str | None = None,
) -> None:
    """Small multiples, ``GRID_COLUMNS`` to a row: ``figure(*panel)`` for each panel, a
    Vega-Lite spec or a plotly figure. With ``static_key``, each spec is drawn on the
    server (``dashboard.static_chart``), keyed ``<static_key>_<n>``."""
    for r, row in enumerate(batched(panels, GRID_COLUMNS)):
        for c, (column, panel) in enumerate(zip(st.columns(GRID_COLUMNS), row, strict=False)):
            with column:
                drawn = figure(*panel)
                if static_key is not None and isinstance(drawn, dict):
                    static_chart.chart(
                        drawn,
                        interactive=False,
                        key=f"{static_key}_{r * GRID_COLUMNS + c}",
                        alt=vega.title_of(drawn),
                        width=GRID_PANEL_PX,
                    )
                else:
                    chart(drawn)


def client_page(key: str, clients: list[int], per_page: int = CLIENTS_PER_PAGE) -> list[int]:
    """The clients on the current page of small multiples (all of them when few): a run
    with 30 clients draws a page of charts at a time, not 30 or more at once."""
    if len(clients) <= per_page:
        return list(clients)
    pages = [clients[i : i + per_page] for i in range(0, len(clients), per_page)]
    index = st.segmented_control(
        f"Clients ({len(clients)}, {per_page} per page)",
        list(range(len(pages))),
        default=0,
        format_func=lambda i: f"{pages[i][0]}-{pages[i][-1]}",
        key=f"{key}_{len(clients)}",
    )
    return list(pages[index or 0])


def query_run_id() -> int | None:
    """The run named in the page URL (``?run=12``), if any and if it is a number."""
    raw = st.query_params.get("run")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


# -- confirmation ------------------------------------------------------------------------------


def ask_to_confirm(key: str, subject: Any) -> None:
    """Start the second step of an action that cannot be undone: ``confirmed(key, …)``
    asks about ``subject`` (say, the ids of the runs to cancel) from the next rerun on."""
    st.session_state[f"{key}_asked"] = subject


def confirmed(key: str, question: Callable[[Any], str], *, confirm: str, keep: str) -> Any | None:
    """While ``ask_to_confirm(key, subject)`` is pending: ``question(subject)`` with a
    confirm and a keep button. Returns the subject once confirmed, else None."""
    subject = st.session_state.get(f"{key}_asked")
    if subject is None:
        return None
    with st.container(border=True):
        st.warning(question(subject), icon=":material/help:")
        yes, no, _ = st.columns([2, 2, 4])
        if yes.button(confirm, type="primary", icon=":material/check:", key=f"{key}_confirm"):
            del st.session_state[f"{key}_asked"]
            return subject
        if no.button(keep, icon=":material/close:", key=f"{key}_keep"):
            del st.session_state[f"{key}_asked"]
            st.rerun()
    return None


# -- errors -------------------------------------------------------------------------------


def show_api_error(err: ApiError) -> None:
    """Say what went wrong and what to do about it, instead of a traceback."""
    if isinstance(err, ApiUnreachable):
        st.error(
            f"**The tapfl API is not reachable** at `{api_url_from_env()}`.\n\n"
            "Start the stack with `tapfl up`, or point `TAPFL_API_URL` at a running API. "
            "This page retries by itself.",
            icon=":material/cloud_off:",
        )
    elif isinstance(err, Unauthorized):
        st.error(
            f"**The API refused your token** (HTTP {err.status}): it was revoked or is "
            "unknown.\n\nSign out (in the sidebar) and sign in with a valid token.",
            icon=":material/key_off:",
        )
    elif err.status == 404:
        st.warning(f"**Not found.** {err.message}", icon=":material/search_off:")
    else:
        st.error(f"**The API call failed.** {err.message}", icon=":material/error:")


@contextmanager
def api_errors() -> Iterator[None]:
    """Show an API failure in place and stop this page (or fragment) run there."""
    try:
        yield
    except ApiError as err:
        show_api_error(err)
        st.stop()


def connection_panel() -> str | None:
    """Sidebar line about the API; returns a message when pages cannot work at all."""
    url = api_url_from_env()
    try:
        health = data.health()
    except ApiUnreachable:
        st.markdown(":red[:material/cloud_off:] API unreachable")
        st.caption(f"`{url}`")
        return (
            f"**Cannot reach the tapfl API** at `{url}`.\n\n"
            "Start the stack with `tapfl up`, or set `TAPFL_API_URL` to the API's address "
            "before `streamlit run dashboard/app.py`."
        )
    except ApiError as err:
        st.markdown(":red[:material/error:] API error")
        return f"**The tapfl API at `{url}` is not healthy.** {err.message}"

    healthy = health.get("status") == "ok"
    mark = ":green[:material/check_circle:]" if healthy else ":orange[:material/warning:]"
    st.markdown(f"{mark} API {health.get('status', '?')}")
    st.caption(f"`{url}`")
    if not health.get("database", True):
        st.warning("The API cannot reach its database: pages will fail.", icon=":material/storage:")
    if not health.get("redis", True):
        st.warning(
            "The API cannot reach Redis: new runs wait in the queue until it is back.",
            icon=":material/schedule:",
        )

    return None
