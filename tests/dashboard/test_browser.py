"""The dashboard in a real headless Chromium: runs page, then a run page with its charts.

Two targets: the dashboard served by ``streamlit run`` against the fake API (always), and
the real embedded stack (``tapfl up``) from ``tests/conftest.py``'s ``embedded_stack``, where
the test submits a short demo run and waits for the worker to finish it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.dashboard.conftest import APP, unused_port
from tests.dashboard.fake_tapfl_api import FakeApi

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
REAL_RUN_TIMEOUT_S = 600

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
def streamlit_server(api_url: str, token: str) -> Iterator[str]:
    """``streamlit run dashboard/app.py`` on a free loopback port, pointed at ``api_url``."""
    port = unused_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAPFL_")}
    env.update(TAPFL_API_URL=api_url, TAPFL_TOKEN=token)
    ARTIFACTS.mkdir(exist_ok=True)
    log = ARTIFACTS / "streamlit-fake.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(APP),
             "--server.port", str(port), "--server.address", "127.0.0.1",
             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
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


@pytest.fixture(
    params=[
        "fake",
        pytest.param("embedded", marks=[pytest.mark.integration, pytest.mark.slow]),
    ]
)
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    if request.param == "embedded":
        try:
            stack = request.getfixturevalue("embedded_stack")
        except pytest.FixtureLookupError:
            pytest.skip("tests/conftest.py provides no embedded_stack fixture yet")
        yield Target("embedded", stack.api_url, stack.dashboard_url, stack.token)
        return
    yield request.getfixturevalue("fake_dashboard")


@pytest.fixture
def fake_dashboard(fake_server: FakeApi) -> Iterator[Target]:
    """The real dashboard server, in front of the fake API with freshly seeded runs."""
    fake_server.reset()
    with streamlit_server(fake_server.url, fake_server.token) as url:
        yield Target("fake", fake_server.url, url, fake_server.token)


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


def submit_short_run(target: Target) -> int:
    """A demo experiment with two rounds through the API; returns its run's id."""
    response = httpx.post(
        f"{target.api_url}/api/v1/experiments",
        json={"name": f"browser-{target.name}", "preset": "demo", "overrides": {"rounds": 2}},
        headers={"Authorization": f"Bearer {target.token}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return int(response.json()["runs"][0]["id"])


def wait_until_finished(target: Target, run_id: int) -> dict:
    headers = {"Authorization": f"Bearer {target.token}"}
    deadline = time.monotonic() + REAL_RUN_TIMEOUT_S
    while True:
        run = httpx.get(f"{target.api_url}/api/v1/runs/{run_id}", headers=headers).json()
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['status']}"
        time.sleep(2)


def what_the_api_has(target: Target, run_id: int) -> tuple[list[tuple[int, str]], list[int]]:
    """(client, task) pairs with evaluations, and clients with training losses."""
    headers = {"Authorization": f"Bearer {target.token}"}
    base = f"{target.api_url}/api/v1/runs/{run_id}"
    metrics = httpx.get(f"{base}/metrics", headers=headers).json()["items"]
    losses = httpx.get(f"{base}/losses", headers=headers).json()["items"]
    panels = sorted({(row["client"], row["task"]) for row in metrics})
    return panels, sorted({row["client"] for row in losses})


def test_runs_page_then_run_page_with_a_chart_per_client(
    target: Target,
    browser,  # type: ignore[no-untyped-def]
) -> None:
    from playwright.sync_api import expect

    run_id = submit_short_run(target)
    run = wait_until_finished(target, run_id)
    assert run["status"] == "succeeded", run.get("error")
    panels, loss_clients = what_the_api_has(target, run_id)
    assert panels, "the run has no evaluations to draw"

    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        # The runs page: the new run is listed, with its status.
        page.goto(target.dashboard_url, wait_until="domcontentloaded")
        expect(page.get_by_role("heading", name="Runs")).to_be_visible(timeout=30_000)
        table = page.get_by_test_id("stDataFrame").first
        expect(table).to_be_visible(timeout=30_000)
        expect(page.get_by_text("API ok")).to_be_visible()

        # The grid draws on a canvas; a visually hidden table mirrors its cells for
        # screen readers, and that is where the values can be read.
        def cell(name: str):  # type: ignore[no-untyped-def]
            return page.get_by_role("gridcell", name=name, exact=True, include_hidden=True)

        row = table.get_by_role("row", include_hidden=True).filter(has=cell(f"run?run={run_id}"))
        expect(row).to_have_count(1, timeout=30_000)
        expect(row.filter(has=cell("succeeded"))).to_have_count(1)
        page.screenshot(path=str(ARTIFACTS / f"runs-page-{target.name}.png"), full_page=True)

        # The run page: one curve chart per client and task, one loss chart per client.
        page.goto(f"{target.dashboard_url}/run?run={run_id}", wait_until="domcontentloaded")
        expect(page.get_by_role("heading", name=f"Run #{run_id}")).to_be_visible(timeout=30_000)
        charts = page.locator(".js-plotly-plot")
        expect(charts).to_have_count(len(panels) + len(loss_clients), timeout=60_000)
        for client, task in panels:
            expect(
                page.locator(".js-plotly-plot", has_text=f"Client {client} · {task}")
            ).to_have_count(1)
        for client in loss_clients:
            expect(
                page.locator(".js-plotly-plot").filter(has_text=f"Client {client}")
            ).not_to_have_count(0)
        expect(page.get_by_test_id("stException")).to_have_count(0)
        expect(page.get_by_text("API ok")).to_be_visible()  # the entry point ran, too
        # Streamlit scrolls inside the page, so a tall window is what captures it all.
        page.set_viewport_size({"width": 1600, "height": 2400})
        page.wait_for_timeout(1000)  # let plotly redraw at the new size
        page.screenshot(path=str(ARTIFACTS / f"run-page-{target.name}.png"), full_page=True)
    finally:
        page.close()


def test_live_panels_follow_a_running_run_without_a_reload(
    fake_dashboard: Target,
    fake_server: FakeApi,
    browser,  # type: ignore[no-untyped-def]
) -> None:
    from playwright.sync_api import expect

    running = fake_server.state.runs[2]
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        page.goto(f"{fake_dashboard.dashboard_url}/run?run=2", wait_until="domcontentloaded")
        expect(page.get_by_text("fl · round 2/4 · ETA 1m 35s")).to_be_visible(timeout=30_000)

        # The worker moves on: the page follows within a few refreshes, no reload.
        running.update(round=3, progress=0.75, eta_s=20.0)
        expect(page.get_by_text("fl · round 3/4 · ETA 20s")).to_be_visible(timeout=15_000)

        running.update(
            status="succeeded", stage="post", round=4, progress=1.0, eta_s=None,
            finished_at=running["started_at"],
        )  # fmt: skip
        expect(page.get_by_text("post · round 4/4")).to_be_visible(timeout=15_000)
        expect(page.get_by_test_id("stException")).to_have_count(0)
    finally:
        page.close()


def test_selecting_a_row_opens_that_run(
    fake_dashboard: Target,
    browser,  # type: ignore[no-untyped-def]
) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        page.goto(fake_dashboard.dashboard_url, wait_until="domcontentloaded")
        table = page.get_by_test_id("stDataFrame").first
        expect(table).to_be_visible(timeout=30_000)
        page.wait_for_timeout(500)  # the grid's canvas lays out after the frame appears
        # The canvas has no DOM per row: click the row marker (the checkbox column) of
        # the third row, run 2, by its position under the header.
        box = table.bounding_box()
        assert box is not None
        header, row_height = 36, 35
        page.mouse.click(box["x"] + 15, box["y"] + header + row_height * 2.5)
        expect(page).to_have_url(re.compile(r"/run\?run=2$"), timeout=15_000)
        expect(page.get_by_role("heading", name="Run #2")).to_be_visible(timeout=15_000)
    finally:
        page.close()
