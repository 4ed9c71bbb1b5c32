"""The Compare page's verdict in a real headless Chromium, on the real stack: the dashboard
(``streamlit run``) in front of the real API (``tests/live_api.py``), with real engine runs
(``real_runs.run_with_worker``).

A small sweep (TAP, FedAvg+FT and local, two seeds, two rounds): the verdict's means and
differences on the page are the ones computed here from each run's ``GET /runs/{id}/metrics``.
A comparison of runs with different round counts warns that the groups differ in
``rounds``. Screenshots of both go to the test artifacts.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.dashboard import real_runs
from tests.dashboard.conftest import Seeded
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

# The order in which a task family's main metric is looked for (the catalog's main metrics).
MAINS = ("accuracy", "mse", "chrf")
SPLITS = {"local": "personalization", "pooled": "generalization"}


@dataclass(frozen=True)
class Runs:
    """The session sweep's TAP runs with FedAvg+FT and local runs of the same config; and
    a local run of three rounds (the sweep's have two)."""

    by_algorithm: dict[str, list[int]]
    longer: int

    @property
    def ids(self) -> list[int]:
        return [run_id for ids in self.by_algorithm.values() for run_id in ids]


def run_all(api: LiveApi, experiment: dict) -> dict[str, list[int]]:  # type: ignore[type-arg]
    by_algorithm: dict[str, list[int]] = defaultdict(list)
    for run in experiment["runs"]:
        outcome = real_runs.run_with_worker(api, run["id"])
        assert outcome == "succeeded", api.call("GET", f"/runs/{run['id']}").get("error")
        by_algorithm[run["algorithm"]].append(run["id"])
    return dict(by_algorithm)


@pytest.fixture(scope="module")
def runs(live_server: LiveApi, seeded: Seeded) -> Runs:
    api = live_server
    rivals = real_runs.submit(
        api,
        "verdict",
        overrides=real_runs.TINY,
        sweep={"algorithm": ["fedavg_ft", "local"], "seed": [1, 2]},
    )
    longer = real_runs.submit(
        api, "verdict-longer", overrides={**real_runs.TINY, "rounds": 3, "algorithm": "local"}
    )
    by_algorithm = {"tap": seeded.sweep.tap, **run_all(api, rivals)}
    [longer_id] = run_all(api, longer)["local"]
    return Runs(by_algorithm, longer_id)


@pytest.fixture(scope="module")
def page_url(live_server: LiveApi, runs: Runs) -> Iterator[str]:
    with streamlit_server(live_server.url, live_server.admin_token) as url:
        yield url


def final_values(api: LiveApi, run_id: int, split: str) -> dict[tuple[int, str], float]:
    """(client, task) -> the run's final model's value of the task's main metric, from the
    run's metric rows: its last evaluated round."""
    rows = api.call("GET", f"/runs/{run_id}/metrics", params={"model": "final", "split": split})
    reported: dict[str, set[str]] = defaultdict(set)
    for row in rows["items"]:
        reported[row["task"]].add(row["metric"])
    main = {task: next(m for m in MAINS if m in metrics) for task, metrics in reported.items()}
    last: dict[tuple[int, str], tuple[tuple[int, int], float]] = {}
    for row in rows["items"]:
        if row["metric"] != main[row["task"]]:
            continue
        key = (row["client"], row["task"])
        order = (row["stage"] == "post", row["round"])
        if key not in last or order > last[key][0]:
            last[key] = (order, row["value"])
    return {key: value for key, (_, value) in last.items()}


def expected_rows(api: LiveApi, runs: Runs, rival: str) -> list[list[str]]:
    """The verdict rows of TAP vs ``rival`` as the page must show them: on, client, task,
    TAP's mean, the rival's mean and the difference (four places)."""
    out = []
    for split, on in SPLITS.items():
        means: dict[str, dict[tuple[int, str], float]] = {}
        for algorithm in ("tap", rival):
            per_run = [final_values(api, run_id, split) for run_id in runs.by_algorithm[algorithm]]
            means[algorithm] = {
                key: sum(values[key] for values in per_run) / len(per_run) for key in per_run[0]
            }
        for client, task in sorted(means["tap"]):
            ours, theirs = means["tap"][(client, task)], means[rival][(client, task)]
            out.append(
                [on, str(client), task, f"{ours:.4f}", f"{theirs:.4f}", f"{ours - theirs:+.4f}"]
            )
    return out


def shown_rows(page, index: int) -> list[list[str]]:  # type: ignore[no-untyped-def]
    """The cells of the ``index``-th rival's verdict table (a Markdown table drawn as
    HTML), row by row."""
    rows = page.locator(f".st-key-compare_verdict_{index} table tbody tr")
    return [
        [c.strip() for c in rows.nth(i).locator("td").all_inner_texts()]
        for i in range(rows.count())
    ]


def test_the_verdict_shows_the_means_and_differences_of_the_runs_metrics(
    live_server: LiveApi,
    runs: Runs,
    page_url: str,
    browser,  # noqa: F811  # type: ignore[no-untyped-def]
) -> None:
    from playwright.sync_api import expect

    picked = ",".join(map(str, runs.ids))
    page = browser.new_page(viewport={"width": 1600, "height": 1400})
    try:
        page.goto(f"{page_url}/compare?runs={picked}", wait_until="domcontentloaded")
        expect(page.get_by_text("tap vs fedavg_ft, per client and task")).to_be_visible(
            timeout=90_000
        )
        expect(page.get_by_text("tap vs local, per client and task")).to_be_visible(timeout=30_000)
        expect(page.get_by_test_id("stException")).to_have_count(0)
        # a fair comparison: same config but the algorithm and seed, two seeds each
        for unfair in ("differ in", "one seed", "Left out"):
            warnings = page.get_by_test_id("stAlertContentWarning").filter(has_text=unfair)
            expect(warnings).to_have_count(0)
        # one table per rival, in the groups' order, after the summary's counts
        for index in range(2):
            expect(page.locator(f".st-key-compare_verdict_{index} table")).to_be_visible()
        screenshot(page, "compare-verdict")
        for index, rival in enumerate(("fedavg_ft", "local")):
            expected = expected_rows(live_server, runs, rival)
            shown = shown_rows(page, index)
            # columns: on, client, task, metric, tap, theirs, difference, CI, seeds, result
            assert [[r[0], r[1], r[2], r[4], r[5], r[6]] for r in shown] == expected, rival
            assert {r[9] for r in shown} <= {"win", "tie", "loss"}
            assert {r[8] for r in shown} == {"2"}  # both seeds paired
    finally:
        page.close()


def test_groups_that_differ_in_rounds_are_warned_about(
    runs: Runs,
    page_url: str,
    browser,  # noqa: F811  # type: ignore[no-untyped-def]
) -> None:
    from playwright.sync_api import expect

    picked = ",".join(map(str, [*runs.by_algorithm["tap"], runs.longer]))
    page = browser.new_page(viewport={"width": 1600, "height": 1100})
    try:
        page.goto(f"{page_url}/compare?runs={picked}", wait_until="domcontentloaded")
        warning = page.get_by_test_id("stAlertContentWarning").filter(
            has_text="The groups differ in rounds"
        )
        expect(warning).to_have_count(1, timeout=90_000)
        expect(warning).to_contain_text("tap, rounds=2: 2")
        expect(warning).to_contain_text("local, rounds=3: 3")
        # the longer run has one seed: said at the top, and no verdict in the table
        expect(page.get_by_text("has one seed: no verdict on it")).to_be_visible()
        expect(page.get_by_test_id("stException")).to_have_count(0)
        counts = page.get_by_test_id("stMarkdown").locator("table").filter(has_text="wins")
        expect(counts).to_be_visible(timeout=30_000)  # the summary's counts
        page.wait_for_timeout(1500)  # let the charts draw before the screenshot
        screenshot(page, "compare-rounds-differ")
    finally:
        page.close()
