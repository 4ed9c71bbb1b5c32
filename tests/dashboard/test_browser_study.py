"""The Study page in a real headless Chromium, on the real stack: the dashboard
(``streamlit run``) in front of the real API (``tests/live_api.py``), with a tiny real sweep
over ``pairs`` (M=1 and M=2, TAP, one seed, two rounds; ``real_runs.make_pairs_sweep``).
The page draws its charts: the training loss with a line per M, the rounds to the
threshold and the final values against M. A screenshot goes to the test artifacts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dashboard import real_runs
from tests.dashboard.test_browser import (
    CHROMIUM,
    browser,  # noqa: F401  (the module's Chromium)
    screenshot,
    streamlit_server,
)
from tests.live_api import LiveApi

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is not installed"),
]


@pytest.fixture(scope="module")
def pairs_sweep(live_server: LiveApi) -> real_runs.PairsSweep:
    return real_runs.make_pairs_sweep(live_server, "pairs study in the browser")


@pytest.fixture(scope="module")
def page_url(live_server: LiveApi, pairs_sweep: real_runs.PairsSweep) -> Iterator[str]:
    with streamlit_server(live_server.url, live_server.admin_token) as url:
        yield url


def test_the_study_view_of_a_pairs_sweep_draws_its_charts(
    pairs_sweep: real_runs.PairsSweep,
    page_url: str,
    browser,  # noqa: F811  # type: ignore[no-untyped-def]
) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1600, "height": 1400})
    try:
        page.goto(f"{page_url}/study?group={pairs_sweep.group}", wait_until="domcontentloaded")
        expect(page.get_by_role("heading", name="Study: modality-task pairs")).to_be_visible(
            timeout=90_000
        )
        charts = page.get_by_test_id("stPlotlyChart")
        # the loss (one algorithm), rounds to threshold, and two tasks' two splits at M=2
        expect(charts).to_have_count(6, timeout=90_000)
        loss = charts.nth(0)
        expect(loss.locator(".gtitle")).to_contain_text("tap · global model's training loss")
        expect(loss.locator(".legendtext")).to_have_text(["M=1", "M=2"], timeout=30_000)
        # a drawn line per M (and its band): plotly's scatter traces hold paths
        expect(loss.locator(".scatterlayer .trace")).to_have_count(4)
        rounds = charts.nth(1)
        expect(rounds.locator(".gtitle")).to_contain_text("Rounds to a training loss")
        expect(rounds.locator(".xtitle")).to_have_text("modality-task pairs M")
        expect(page.get_by_test_id("stException")).to_have_count(0)
        expect(page.get_by_text("Prepare the 6 figures (PNG and SVG)")).to_be_visible()
        page.wait_for_timeout(1000)  # let the charts settle before the screenshot
        screenshot(page, "study")
    finally:
        page.close()
