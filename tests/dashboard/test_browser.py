"""The dashboard in a real headless Chromium.

Against the real embedded stack (``tapfl up`` from ``tests/conftest.py``'s
``embedded_stack``: Redis, Celery worker, uvicorn, Streamlit): submit a small demo run
through the form, watch it finish on the runs page, open its run page and see its curves,
then open it on the Compare page. Against the real API of the dashboard tests
(``streamlit run`` in front of ``tests/live_api.py``'s server, with the real engine runs of
``real_runs.py``): the runs and run pages, live panels and row selection.

Every page visited is saved as a screenshot under ``$TAPFL_TEST_ARTIFACTS`` (default:
``test-artifacts/`` at the repository root); the paths are printed (``pytest -s``).
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dashboard import real_runs, static_charts
from tests.dashboard.conftest import APP, Seeded, unused_port
from tests.live_api import LiveApi

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(
    os.environ.get("TAPFL_TEST_ARTIFACTS") or Path(__file__).resolve().parents[2] / "test-artifacts"
)
REAL_RUN_TIMEOUT_S = 600
# The demo with the fewest steps that still has every stage: FL rounds, evaluations, stage 2.
SMALL_DEMO = {
    "Rounds": "2",
    "Local steps": "2",
    "Stage-2 iterations": "2",
    "Evaluate every … rounds": "1",
}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
]


@dataclass
class Target:
    name: str
    api_url: str
    dashboard_url: str
    token: str


@contextmanager
def streamlit_server(
    api_url: str, token: str | None, app: Path = APP, checkout: Path | None = None
) -> Iterator[str]:
    """``streamlit run dashboard/app.py`` (or ``app``) on a free loopback port, pointed at
    ``api_url``. With a token, the page signs its visitors in with it, as ``tapfl up`` does
    with the admin's; without one, each visitor signs in. With ``checkout`` (another
    working tree of this project), that tree's dashboard, its modules imported from there."""
    port = unused_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAPFL_")}
    env.update(TAPFL_API_URL=api_url)
    if checkout is not None:
        app = checkout / "dashboard" / "app.py"
        env.update(PYTHONPATH=str(checkout))
    if token is not None:
        env.update(TAPFL_TOKEN=token, TAPFL_DASHBOARD_AUTO_SIGNIN="1")
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / "streamlit-live.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(app),
                "--server.port",
                str(port),
                "--server.address",
                "127.0.0.1",
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=checkout,  # Streamlit puts the working directory first on the path
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/_stcore/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def screenshot(page, name: str) -> Path:  # type: ignore[no-untyped-def]
    """A full-page screenshot as a test artifact; prints where it went."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


@pytest.fixture(scope="module")
def live_dashboard(live_server: LiveApi, seeded: Seeded) -> Iterator[Target]:
    """The real dashboard server in front of the session's API and its runs."""
    api = live_server
    with streamlit_server(api.url, api.admin_token) as url:
        yield Target("live", api.url, url, api.admin_token)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


def what_the_api_has(target: Target, run_id: int) -> tuple[list[tuple[int, str]], list[int]]:
    """(client, task) pairs with evaluations, and clients with training losses."""
    headers = {"Authorization": f"Bearer {target.token}"}
    base = f"{target.api_url}/api/v1/runs/{run_id}"
    metrics = httpx.get(f"{base}/metrics", headers=headers).json()["items"]
    losses = httpx.get(f"{base}/losses", headers=headers).json()["items"]
    panels = sorted({(row["client"], row["task"]) for row in metrics})
    return panels, sorted({row["client"] for row in losses})


def test_runs_page_then_run_page_with_a_chart_per_client(
    live_dashboard: Target,
    seeded: Seeded,
    browser,  # type: ignore[no-untyped-def]
) -> None:
    from playwright.sync_api import expect

    target = live_dashboard
    run_id = seeded.sweep.tap[0]  # a real TAP run, finished
    panels, loss_clients = what_the_api_has(target, run_id)
    assert panels, "the run has no evaluations to draw"

    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        # The runs page: the run is listed, with its status.
        page.goto(target.dashboard_url, wait_until="domcontentloaded")
        expect(page.get_by_role("heading", name="Runs")).to_be_visible(timeout=30_000)
        table = page.get_by_test_id("stDataFrame").first
        expect(table).to_be_visible(timeout=30_000)
        # This API has no Redis: the sidebar says so (and that the entry point ran).
        expect(page.get_by_text("API degraded")).to_be_visible()
        row, cell = run_in_table(page, run_id)
        expect(row).to_have_count(1, timeout=30_000)
        expect(row.filter(has=cell("succeeded"))).to_have_count(1)
        screenshot(page, f"runs-page-{target.name}")

        # The run page: what personalization bought and cost (drawn on the server, an
        # image), one curve chart per client and task, one loss chart per client once opened.
        page.goto(f"{target.dashboard_url}/run?run={run_id}", wait_until="domcontentloaded")
        expect(page.get_by_role("heading", name=f"Run #{run_id}")).to_be_visible(timeout=30_000)
        gains = page.locator(".st-key-static_chart_gains img")
        expect(gains).to_have_count(1, timeout=60_000)
        page.wait_for_function(
            "(i) => i.complete && i.naturalWidth > 300", arg=gains.element_handle(), timeout=60_000
        )
        drawing = html.unescape(image_svg(gains))  # its text, as drawn
        assert "bought: on the client's own test data" in drawing
        assert "personal-global" in drawing
        for client, task in panels:
            assert f"client {client} · {task}" in drawing  # a bar row of each
        # Its table, and the last values' further down: Markdown drawn as HTML tables.
        tables = page.get_by_test_id("stMarkdown").locator("table")
        expect(tables).to_have_count(2, timeout=60_000)
        expect(tables.first.locator("th")).to_contain_text(["client", "task", "metric"])
        expect(tables.nth(1).locator("th").filter(has_text="personal-global")).to_have_count(1)
        for client, task in panels:
            curve = vega_chart(page, f"Client {client} · {task}")
            expect(curve.locator(".marks")).to_have_count(1, timeout=60_000)
        page.get_by_text("Local training loss").click()
        for client in loss_clients:
            expect(
                page.locator(".js-plotly-plot").filter(has_text=f"Client {client}")
            ).not_to_have_count(0, timeout=60_000)
        page.get_by_text("Stage 2 step by step").click()
        expect(page.locator(".js-plotly-plot").filter(has_text="· stage 2").first).to_be_visible(
            timeout=60_000
        )
        expect(page.get_by_test_id("stException")).to_have_count(0)
        # Streamlit scrolls inside the page, so a tall window is what captures it all.
        page.set_viewport_size({"width": 1600, "height": 2400})
        page.wait_for_timeout(1000)  # let plotly redraw at the new size
        screenshot(page, f"run-page-{target.name}")
    finally:
        page.close()


def vega_chart(page: Any, title: str) -> Any:
    """The Vega-Lite chart titled ``title`` (case-sensitive: the bought/cost chart's labels
    read "client 0 · task")."""
    return page.get_by_test_id("stVegaLiteChart").filter(has_text=re.compile(re.escape(title)))


def test_live_panels_follow_a_running_run_without_a_reload(
    live_dashboard: Target,
    live_server: LiveApi,
    browser,  # type: ignore[no-untyped-def]
) -> None:
    from playwright.sync_api import expect

    api = live_server
    run_id = real_runs.make_running(api, "browser-live")
    attempt = real_runs.attempt_of(api, run_id)
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        page.goto(f"{live_dashboard.dashboard_url}/run?run={run_id}", wait_until="domcontentloaded")
        expect(page.get_by_text("fl · round 1/2 · ETA 1m 35s")).to_be_visible(timeout=30_000)

        # The worker moves on: the page follows within a few refreshes, no reload.
        real_runs.record(api, run_id, attempt, [real_runs.progress(2, 2, 0.75, 20.0)])
        expect(page.get_by_text("fl · round 2/2 · ETA 20s")).to_be_visible(timeout=15_000)

        post = real_runs.progress(2, 2, 0.9, 5.0).model_copy(update={"stage": "post"})
        real_runs.record(api, run_id, attempt, [post])
        real_runs.finish(api, run_id, attempt, rounds=2)
        expect(page.get_by_text("post · round 2/2")).to_be_visible(timeout=15_000)
        expect(page.get_by_test_id("stException")).to_have_count(0)
    finally:
        page.close()


def test_selecting_a_row_offers_to_open_cancel_or_retry_that_run(
    live_dashboard: Target,
    live_server: LiveApi,
    browser,  # type: ignore[no-untyped-def]
) -> None:
    from playwright.sync_api import expect

    run_id = real_runs.make_running(live_server, "browser-select")  # the newest run
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        page.goto(live_dashboard.dashboard_url, wait_until="domcontentloaded")
        table = page.get_by_test_id("stDataFrame").first
        expect(table).to_be_visible(timeout=30_000)
        row, _ = run_in_table(page, run_id)
        expect(row).to_have_count(1, timeout=30_000)
        page.wait_for_timeout(500)  # the grid's canvas lays out after the frame appears
        # The canvas has no DOM per row: click the row marker (the checkbox column) of
        # the first row, the newest run, by its position under the header.
        box = table.bounding_box()
        assert box is not None
        header, row_height = 36, 35
        page.mouse.click(box["x"] + 15, box["y"] + header + row_height * 0.5)
        expect(page.get_by_role("button", name="Cancel (1)")).to_be_enabled(timeout=15_000)
        expect(page.get_by_role("button", name="Retry (0)")).to_be_disabled()
        page.get_by_role("link", name=f"Open run #{run_id}").click(timeout=15_000)
        expect(page).to_have_url(re.compile(rf"/run\?run={run_id}$"), timeout=15_000)
        expect(page.get_by_role("heading", name=f"Run #{run_id}")).to_be_visible(timeout=15_000)
    finally:
        page.close()


def image_svg(image) -> str:  # type: ignore[no-untyped-def]
    """The SVG text of a chart drawn on the server (an ``<img>`` with an SVG data URL)."""
    return static_charts.svg_of(str(image.get_attribute("src")))


def run_in_table(page, run_id: int):  # type: ignore[no-untyped-def]
    """The runs table's row of ``run_id`` (read from the grid's hidden accessible table)."""

    def cell(name: str):  # type: ignore[no-untyped-def]
        return page.get_by_role("gridcell", name=name, exact=True, include_hidden=True)

    table = page.get_by_test_id("stDataFrame").first
    return table.get_by_role("row", include_hidden=True).filter(has=cell(f"run?run={run_id}")), cell


@pytest.mark.integration
@pytest.mark.slow
def test_submit_a_demo_run_in_the_form_watch_it_finish_and_see_its_curves(
    embedded_stack,  # type: ignore[no-untyped-def]
    browser,  # type: ignore[no-untyped-def]
) -> None:
    """Issue 7's acceptance, end to end on the real stack, screenshots of every page."""
    from playwright.sync_api import expect

    stack = embedded_stack
    headers = {"Authorization": f"Bearer {stack.token}"}
    page = browser.new_page(viewport={"width": 1600, "height": 1100})
    try:
        # 1. Submit: a small demo run, typed into the form.
        page.goto(f"{stack.dashboard_url}/submit", wait_until="domcontentloaded")
        expect(page.get_by_role("heading", name="Submit an experiment")).to_be_visible(
            timeout=60_000
        )
        page.get_by_label("Name", exact=True).fill("browser-e2e")
        page.get_by_label("Name", exact=True).press("Enter")
        for label, value in SMALL_DEMO.items():
            field = page.get_by_label(label, exact=True)
            field.fill(value)
            field.press("Enter")
            expect(field).to_have_value(value)
            page.wait_for_timeout(300)  # let Streamlit take the value before the next field
        expect(page.get_by_text("1 run will be queued")).to_be_visible(timeout=15_000)
        screenshot(page, "e2e-1-submit")
        page.get_by_role("button", name="Submit").click()
        created = page.get_by_text(re.compile(r"Experiment #\d+ browser-e2e created with 1 run"))
        expect(created).to_be_visible(timeout=60_000)
        link = page.get_by_role("link", name=re.compile(r"Open run #\d+"))
        run_id = int(re.search(r"#(\d+)", link.inner_text()).group(1))  # type: ignore[union-attr]
        # What the form sent is what the run will do.
        config = httpx.get(f"{stack.api_url}/api/v1/runs/{run_id}", headers=headers).json()
        config = config["config"]
        assert (config["rounds"], config["local_steps"], config["post_iterations"]) == (2, 2, 2)
        assert config["eval_every"] == 1

        # 2. Runs: the run is listed and, without a reload, reaches succeeded.
        page.get_by_role("link", name="Watch them on the Runs page").click()
        expect(page.get_by_role("heading", name="Runs")).to_be_visible(timeout=30_000)
        row, cell = run_in_table(page, run_id)
        expect(row).to_have_count(1, timeout=60_000)
        expect(row.filter(has=cell("succeeded"))).to_have_count(
            1, timeout=REAL_RUN_TIMEOUT_S * 1000
        )
        run = httpx.get(f"{stack.api_url}/api/v1/runs/{run_id}", headers=headers).json()
        assert run["status"] == "succeeded", run.get("error")
        screenshot(page, "e2e-2-runs")

        # 3. Run: its page, a curve chart per client and task that the API has values for.
        # Select its row (the newest, so the first: the grid is a canvas, so click the row
        # marker by position) and follow the "Open run" link the selection offers.
        table = page.get_by_test_id("stDataFrame").first
        box = table.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + 15, box["y"] + 36 + 35 * 0.5)
        page.get_by_role("link", name=f"Open run #{run_id}").click(timeout=30_000)
        expect(page.get_by_role("heading", name=f"Run #{run_id}")).to_be_visible(timeout=60_000)
        panels, _ = what_the_api_has(Target("embedded", stack.api_url, "", stack.token), run_id)
        assert panels
        for client, task in panels:
            curve = vega_chart(page, f"Client {client} · {task}")
            expect(curve.locator(".marks")).to_have_count(1, timeout=60_000)
        # the stage-2 models are on the curves, with their legend
        expect(page.get_by_text("stage-2 final models").first).to_be_visible()
        expect(page.get_by_text("this API does not serve them")).to_have_count(0)
        # stage 2 step by step, the student's λ·KD beside the task losses, from real events
        page.get_by_text("Stage 2 step by step").click(timeout=60_000)
        expect(page.locator(".js-plotly-plot", has_text="student λ·KD").first).to_be_visible(
            timeout=60_000
        )
        expect(page.get_by_test_id("stException")).to_have_count(0)
        page.set_viewport_size({"width": 1600, "height": 2600})
        page.wait_for_timeout(1000)  # let plotly redraw at the new size
        screenshot(page, "e2e-3-run")

        # 4. Compare: the same run, by id, through the real /compare endpoint
        page.set_viewport_size({"width": 1600, "height": 1100})
        page.goto(f"{stack.dashboard_url}/compare?runs={run_id}", wait_until="domcontentloaded")
        expect(page.get_by_role("heading", name="Compare")).to_be_visible(timeout=60_000)
        expect(
            page.get_by_text("Verdict: how does ours do against each other group?")
        ).to_be_visible(timeout=60_000)
        # its charts drawn on the server, the first of the curves among them
        curve = page.locator(".st-key-static_chart_compare_curve_0 img")
        expect(curve).to_be_visible(timeout=60_000)
        assert "Client " in html.unescape(image_svg(curve))
        expect(page.get_by_text("This API cannot compare runs yet")).to_have_count(0)
        expect(page.get_by_test_id("stException")).to_have_count(0)
        screenshot(page, "e2e-4-compare")
    finally:
        page.close()
