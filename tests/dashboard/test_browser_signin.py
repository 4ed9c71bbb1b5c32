"""Signing in and out in a real Chromium, against the real API and a dashboard that holds
no token (as in docker-compose): a member signs in with their own token, cannot cancel
another user's run from the runs page (the API's refusal of the same call is tested in
``tests/backend/test_team_auth.py``), and signs out."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.dashboard import real_runs
from tests.dashboard.test_browser import (
    CHROMIUM,
    Target,
    browser,  # noqa: F401  (the module's Chromium)
    run_in_table,
    screenshot,
    streamlit_server,
)
from tests.live_api import LiveApi

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(), reason="no Chromium"),
]


@pytest.fixture(scope="module")
def tokenless_dashboard(live_server: LiveApi) -> Iterator[Target]:
    with streamlit_server(live_server.url, None) as url:
        yield Target("tokenless", live_server.url, url, "")


def test_a_member_signs_in_cannot_cancel_an_admins_run_and_signs_out(
    tokenless_dashboard: Target,
    live_server: LiveApi,
    browser,  # noqa: F811  # type: ignore[no-untyped-def]
) -> None:
    from playwright.sync_api import expect

    api = live_server
    member = api.call("POST", "/users", json={"name": "browser-member"})
    run_id = real_runs.make_running(api, "browser-admins-run")  # the admin's, the newest
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        page.goto(tokenless_dashboard.dashboard_url, wait_until="domcontentloaded")
        expect(page.get_by_role("heading", name="Sign in to tapfl")).to_be_visible(timeout=30_000)
        expect(page.get_by_test_id("stDataFrame")).to_have_count(0)
        screenshot(page, "signin-form")

        page.get_by_label("API token").fill(member["token"])
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("Signed in as browser-member")).to_be_visible(timeout=30_000)
        assert member["token"] not in page.url
        assert member["token"] not in page.content()

        table = page.get_by_test_id("stDataFrame").first
        expect(table).to_be_visible(timeout=30_000)
        row, _ = run_in_table(page, run_id)
        expect(row).to_have_count(1, timeout=30_000)
        page.wait_for_timeout(500)  # the grid's canvas lays out after the frame appears
        box = table.bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + 15, box["y"] + 36 + 35 * 0.5)  # the newest row's marker
        # Selected, but not the member's: nothing to cancel, and the page says why.
        expect(page.get_by_role("button", name="Cancel (0)")).to_be_disabled(timeout=15_000)
        expect(page.get_by_text("belong to other users")).to_be_visible()
        screenshot(page, "signin-member-cannot-cancel")
        headers = {"Authorization": f"Bearer {api.admin_token}"}
        run = httpx.get(f"{api.url}/api/v1/runs/{run_id}", headers=headers).json()
        assert run["status"] == "running"

        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in to tapfl")).to_be_visible(timeout=30_000)
        expect(page.get_by_text("Signed in as")).to_have_count(0)
    finally:
        page.close()
