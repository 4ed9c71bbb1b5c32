"""The run page's cached reads follow the run: a run that is retried and then succeeds
shows its results at the next rerun, not what its earlier attempt left in the caches."""

from __future__ import annotations

import time
from collections.abc import Callable

from streamlit.testing.v1 import AppTest

from dashboard import data
from tests.dashboard import real_runs, vega
from tests.dashboard.conftest import Dashboard

OpenPage = Callable[..., AppTest]
RUN = "app_pages/run.py"


def chart_titles(at: AppTest) -> list[str]:
    return [vega.title_of(spec) for spec in vega.specs(at)]


def infos(at: AppTest) -> str:
    return "\n".join(str(info.value) for info in at.info)


def test_a_retried_run_that_succeeded_shows_its_curves_at_the_next_rerun(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    api = dashboard.api
    [run_id] = real_runs.run_ids(real_runs.submit(api, "retried", overrides={"rounds": 2}))
    first = real_runs.claim(api, run_id)
    real_runs.fail(api, run_id, first)
    at = open_page(RUN, run=str(run_id))
    assert "No evaluations yet" in infos(at)  # cached: facets, losses, logs of attempt 1

    api.call("POST", f"/runs/{run_id}/retry")
    second = real_runs.claim(api, run_id)
    assert second == first + 1
    task = real_runs.CLASSIFY
    real_runs.record(
        api,
        run_id,
        second,
        [
            real_runs.evaluation(r, 0, task, "personal", "local", "accuracy", 0.5 + r / 10)
            for r in (1, 2)
        ],
    )
    real_runs.finish(api, run_id, second, rounds=2)
    # The run itself is cached for LIVE_TTL_S; its rows were cached for much longer
    # (FACETS_LIVE_TTL_S for a queued run) and must follow it as soon as it is read again.
    time.sleep(data.LIVE_TTL_S + 0.5)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "No evaluations yet" not in infos(at)
    assert f"Client 0 · {task}" in chart_titles(at)
