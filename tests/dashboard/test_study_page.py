"""The Study page, rendered by Streamlit's AppTest against the real API on loopback, with a
real sweep over ``pairs`` (M=1 and M=2, two rounds)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import study
from dashboard.data import LOSS_COLUMNS
from tests.dashboard import real_runs
from tests.dashboard.conftest import Dashboard
from tests.live_api import LiveApi

OpenPage = Callable[..., AppTest]
STUDY = "app_pages/study.py"


@pytest.fixture(scope="module")
def pairs_sweep(live_server: LiveApi) -> real_runs.PairsSweep:
    return real_runs.make_pairs_sweep(live_server)


def test_the_study_of_a_pairs_sweep_shows_its_charts_and_table(
    open_page: OpenPage, dashboard: Dashboard, pairs_sweep: real_runs.PairsSweep
) -> None:
    at = open_page(STUDY, group=pairs_sweep.group)
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="study_group").value == pairs_sweep.group
    assert "M = 1, 2" in at.selectbox(key="study_group").format_func(pairs_sweep.group)
    charts = at.get("plotly_chart")
    # training loss (tap), rounds to threshold, and per task personalization + generalization
    assert len(charts) >= 4
    # The global losses the page asked for, of every run of the sweep.
    for run_id in pairs_sweep.by_pairs.values():
        assert dashboard.asked(f"/runs/{run_id}/losses", model="global", stage="fl")
    [table] = at.dataframe
    rows = table.value
    assert rows["pairs"].tolist() == ["M=1", "M=2"]
    assert rows["algorithm"].tolist() == ["tap", "tap"]
    # M=1 keeps only image classification; M=2 adds text classification.
    columns = [c for c in rows.columns if "personalization" in c]
    assert len(columns) == 2
    m1 = rows.iloc[0]
    assert sum(bool(m1[c]) for c in columns) == 1
    assert all(rows.iloc[1][c] for c in columns)
    # exported like Compare's: the table as files, the figures once prepared
    downloads = [element.proto.label for element in at.get("download_button")]
    assert downloads == ["Markdown table", "LaTeX table", "Table (CSV)"]
    assert at.button(key="export_prepare_figures").label == (
        f"Prepare the {len(charts)} figures (PNG and SVG)"
    )


def test_the_threshold_is_the_highest_last_loss_and_every_run_reaches_it(
    open_page: OpenPage, dashboard: Dashboard, pairs_sweep: real_runs.PairsSweep
) -> None:
    import pandas as pd

    at = open_page(STUDY, group=pairs_sweep.group)
    lasts = []
    for run_id in pairs_sweep.by_pairs.values():
        rows = dashboard.api.call(
            "GET", f"/runs/{run_id}/losses", params={"model": "global", "stage": "fl"}
        )
        items = rows["items"] if isinstance(rows, dict) else rows
        frame = pd.DataFrame(items).reindex(columns=LOSS_COLUMNS)
        lasts.append(float(study.global_loss(frame).iloc[-1]))
    threshold = at.number_input(key="study_threshold")
    assert threshold.value == pytest.approx(max(lasts))
    rounds = at.dataframe[0].value["rounds to threshold"].tolist()
    assert all(cell.endswith("(1/1)") for cell in rounds), rounds
    # A threshold below every loss: no run reaches it.
    threshold.set_value(-1.0).run()
    assert not at.exception
    assert at.dataframe[0].value["rounds to threshold"].tolist() == ["never (0/1)"] * 2


def test_without_a_pairs_sweep_the_page_says_how_to_start_one(
    empty_dashboard: LiveApi,
) -> None:
    from tests.dashboard.conftest import render

    at = render(STUDY)
    assert "No sweep over `pairs` yet" in at.info[0].value
    assert "--sweep 'pairs=[1,2,3,4]'" in at.info[0].value
