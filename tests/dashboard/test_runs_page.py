"""The Runs page, rendered by Streamlit's AppTest against the real API on loopback, with
the runs of ``real_runs.py``: the table, its filters and search, and the actions on the
selected rows."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboard import real_runs
from tests.dashboard.conftest import Dashboard, Seeded, render
from tests.dashboard.test_browser import CHROMIUM, CHROMIUM_ARGS, screenshot, streamlit_server
from tests.live_api import LiveApi

OpenPage = Callable[..., AppTest]


def texts(at: AppTest, kind: str) -> list[str]:
    return [str(element.value) for element in getattr(at, kind)]


def all_text(at: AppTest) -> str:
    kinds = ("title", "markdown", "caption", "error", "warning", "info", "success", "code")
    return "\n".join(text for kind in kinds for text in texts(at, kind))


def run_status(dashboard: Dashboard, run_id: int) -> str:
    return dashboard.api.call("GET", f"/runs/{run_id}")["status"]


def search(at: AppTest, text: str) -> AppTest:
    return at.text_input(key="runs_search").input(text).run()


def table_runs(at: AppTest) -> list[str]:
    return list(at.dataframe[0].value["run"])


# -- runs ------------------------------------------------------------------------------------


def test_runs_table_lists_every_run_newest_first_with_status(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    states = dashboard.runs.states
    at = search(open_page(), "states")
    assert texts(at, "title") == ["Runs"]
    table = at.dataframe[0].value
    newest_first = [states.queued, states.cancelled, states.failed, states.running]
    assert list(table["run"]) == [f"run?run={run_id}" for run_id in newest_first]
    assert list(table["status"]) == ["queued", "cancelled", "failed", "running"]
    assert list(table["experiment"]) == ["states"] * 4
    assert list(table["round"]) == ["0/2", "0/2", "1/2", "1/2"]
    assert list(table["progress"]) == [0.0, 0.0, 0.25, 0.5]
    assert list(table["ETA"]) == ["", "", "", "1m 35s"]  # only the running one has an ETA
    assert list(table["seed"]) == [4, 3, 2, 1]
    assert "1-4 of 4 runs" in all_text(at)
    assert "refreshes every 3 s" in all_text(at)  # a run is active: live refresh


def test_status_filter_is_applied_by_the_api(open_page: OpenPage, dashboard: Dashboard) -> None:
    at = open_page()
    at.segmented_control(key="runs_status").set_value("failed").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert set(table["status"]) == {"failed"}
    assert f"run?run={dashboard.runs.states.failed}" in list(table["run"])
    assert dashboard.asked("/runs", status="failed")
    assert "refreshes every 30 s" in all_text(at)  # nothing active in view: slow refresh


@pytest.mark.usefixtures("empty_dashboard")
def test_no_runs_points_to_the_submit_page() -> None:
    at = render()
    assert "No runs here yet" in all_text(at)
    assert not at.dataframe


# -- runs: filters, search and actions ------------------------------------------------------------


def test_runs_table_shows_each_runs_owner(open_page: OpenPage) -> None:
    table = search(open_page(), "states").dataframe[0].value
    assert list(table["owner"]) == ["admin"] * 4  # the bootstrap user submitted them


def test_search_and_algorithm_filter_narrow_the_table(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    sweep = dashboard.runs.sweep
    at = search(open_page(), "curves")
    assert table_runs(at) == [f"run?run={run_id}" for run_id in sorted(sweep.run_ids)[::-1]]
    at.multiselect(key="runs_algorithms").set_value(["fedavg"]).run()
    assert table_runs(at) == [f"run?run={run_id}" for run_id in sorted(sweep.fedavg)[::-1]]
    search(at, "curves seed 9")
    assert not at.dataframe
    assert "No run matches these filters." in all_text(at)


def select_rows(at: AppTest, *rows: int) -> AppTest:
    at.session_state["runs_table"] = {"selection": {"rows": list(rows), "columns": []}}
    return at.run()


def test_selected_rows_can_be_cancelled_and_retried(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    running = real_runs.make_running(dashboard.api, "act-on-rows")
    failed = real_runs.make_failed(dashboard.api, "act-on-rows")
    at = search(open_page(), "act-on-rows")
    assert table_runs(at) == [f"run?run={failed}", f"run?run={running}"]
    at = select_rows(at, 0, 1)
    assert at.button(key="runs_cancel").label == "Cancel (1)"
    assert at.button(key="runs_retry").label == "Retry (1)"
    at.button(key="runs_cancel").click().run()
    assert run_status(dashboard, running) == "running"  # it asks first
    assert any("Cancel 1 run" in w for w in texts(at, "warning"))
    at.button(key="runs_cancel_confirm").click().run()
    assert not at.exception
    assert run_status(dashboard, running) == "cancelling"
    assert run_status(dashboard, failed) == "failed"  # only the cancellable one
    assert "1 run cancelled." in texts(at, "success")

    at = select_rows(at, 0)  # the failed run
    at.button(key="runs_retry").click().run()
    assert run_status(dashboard, failed) == "queued"
    assert "1 run queued again." in texts(at, "success")


def test_one_selected_row_links_to_its_run_and_finished_runs_cannot_be_cancelled(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    newest = max(dashboard.runs.sweep.run_ids)
    at = select_rows(search(open_page(), "curves"), 0)  # a succeeded run
    assert [link.proto.label for link in at.get("page_link")] == [f"Open run #{newest}"]
    assert at.button(key="runs_cancel").disabled
    assert at.button(key="runs_retry").disabled


def test_a_refused_action_says_why(open_page: OpenPage, dashboard: Dashboard) -> None:
    run_id = real_runs.make_running(dashboard.api, "refused-action")
    at = select_rows(search(open_page(), "refused-action"), 0)
    # Finished meanwhile (the page still shows it running): the API answers 409.
    real_runs.finish(dashboard.api, run_id, real_runs.attempt_of(dashboard.api, run_id), 2)
    at.button(key="runs_cancel").click().run()
    at.button(key="runs_cancel_confirm").click().run()
    assert not at.exception
    assert any(f"run {run_id} already succeeded" in w for w in texts(at, "warning"))


def test_cancel_asks_first_and_keeping_the_runs_cancels_nothing(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    running = real_runs.make_running(dashboard.api, "keep-running")
    at = select_rows(search(open_page(), "keep-running"), 0)
    at.button(key="runs_cancel").click().run()
    [question] = [w for w in texts(at, "warning") if w.startswith("Cancel 1 run")]
    assert f"#{running}" in question
    at.button(key="runs_cancel_keep").click().run()
    assert not at.exception
    assert run_status(dashboard, running) == "running"
    assert not [w for w in texts(at, "warning") if w.startswith("Cancel 1 run")]


# -- in a real browser -----------------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"
)
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture(scope="module")
def runs_page_url(live_server: LiveApi, seeded: Seeded) -> Iterator[str]:
    """``streamlit run`` in front of the session's API and its runs."""
    with streamlit_server(live_server.url, live_server.admin_token) as url:
        yield url


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


def open_runs_page(chromium: Any, url: str, width: int, height: int) -> Any:
    from playwright.sync_api import expect

    page = chromium.new_page(viewport={"width": width, "height": height})
    page.goto(url, wait_until="domcontentloaded")
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible(timeout=30_000)
    page.wait_for_timeout(500)  # the grid's canvas lays out after the frame appears
    return page


@pytest.mark.browser
@needs_chromium
def test_loading_the_runs_page_asks_nothing_of_other_hosts(
    runs_page_url: str, chromium: Any
) -> None:
    requested: list[str] = []
    page = chromium.new_page(viewport={"width": 1440, "height": 900})
    page.on("request", lambda request: requested.append(request.url))
    try:
        page.goto(runs_page_url, wait_until="networkidle")
        page.get_by_test_id("stDataFrame").first.wait_for(timeout=30_000)
        page.wait_for_load_state("networkidle")
    finally:
        page.close()
    assert requested
    outside = [url for url in requested if urlsplit(url).hostname not in LOOPBACK]
    assert not outside, outside


@pytest.mark.browser
@needs_chromium
def test_the_runs_table_fits_a_1440_px_screen(runs_page_url: str, chromium: Any) -> None:
    page = open_runs_page(chromium, runs_page_url, 1440, 900)
    try:
        scroller = page.get_by_test_id("stDataFrame").first.locator(".dvn-scroller")
        widths = scroller.evaluate("el => [el.scrollWidth, el.clientWidth]")
        screenshot(page, "runs-1440")
    finally:
        page.close()
    content, visible = widths
    assert content <= visible, f"the table scrolls sideways: {content} px in {visible} px"
