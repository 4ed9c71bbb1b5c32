"""Each page, rendered by Streamlit's AppTest against the fake API on loopback."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.dashboard.conftest import APP, unused_port
from tests.dashboard.fake_tapfl_api import CLASSIFY, GENERATE, PANELS, FakeApi, FakeState

OpenPage = Callable[..., AppTest]
RUN = "app_pages/run.py"
SUBMIT = "app_pages/submit.py"


def texts(at: AppTest, kind: str) -> list[str]:
    return [str(element.value) for element in getattr(at, kind)]


def all_text(at: AppTest) -> str:
    kinds = ("title", "markdown", "caption", "error", "warning", "info", "success", "code")
    return "\n".join(text for kind in kinds for text in texts(at, kind))


def asked(fake_api: FakeApi, path_end: str, **params: str) -> bool:
    """Whether some request to ``path_end`` carried all of ``params`` in its query."""
    return any(params.items() <= query.items() for query in fake_api.state.queries(path_end))


def figures(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def metric_figures(at: AppTest) -> dict[str, dict[str, Any]]:
    """Curve charts by title ("Client 1 · task"); loss charts are titled "Client 1"."""
    found = {}
    for figure in figures(at):
        title = figure["layout"]["title"]["text"]
        if " · " in title:
            found[title] = figure
    return found


def loss_figures(at: AppTest) -> dict[str, dict[str, Any]]:
    found = {}
    for figure in figures(at):
        title = figure["layout"]["title"]["text"]
        if " · " not in title:
            found[title] = figure
    return found


# -- runs ------------------------------------------------------------------------------------


def test_runs_table_lists_every_run_newest_first_with_status(open_page: OpenPage) -> None:
    at = open_page()
    assert texts(at, "title") == ["Runs"]
    table = at.dataframe[0].value
    assert list(table["run"]) == ["run?run=4", "run?run=3", "run?run=2", "run?run=1"]
    assert list(table["status"]) == [
        "queued",
        "failed",
        "running",
        "succeeded",
    ]
    assert list(table["experiment"]) == ["broken", "broken", "demo-sweep", "demo-sweep"]
    assert list(table["round"]) == ["0/4", "1/4", "2/4", "4/4"]
    assert list(table["progress"]) == [0.0, 0.25, 0.5, 1.0]
    assert table["ETA"].iloc[2] == "1m 35s"  # only the running one has an ETA
    assert list(table["seed"]) == [43, 41, 42, 41]
    assert "1-4 of 4 runs" in all_text(at)
    assert "refreshes every 3 s" in all_text(at)  # a run is active: live refresh


def test_status_filter_is_applied_by_the_api(open_page: OpenPage, fake_api: FakeApi) -> None:
    at = open_page()
    at.segmented_control(key="runs_status").set_value("failed").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["run"]) == ["run?run=3"]
    assert asked(fake_api, "/runs", status="failed")
    assert "refreshes every 30 s" in all_text(at)  # nothing active in view: slow refresh


def test_no_runs_points_to_the_submit_page(open_page: OpenPage, fake_api: FakeApi) -> None:
    fake_api.reset(FakeState())
    at = open_page()
    assert "No runs here yet" in all_text(at)
    assert not at.dataframe


# -- run ---------------------------------------------------------------------------------------


def test_run_page_draws_a_chart_per_client_and_task(open_page: OpenPage) -> None:
    at = open_page(RUN, run="1")
    assert texts(at, "title") == ["Run #1 · demo-sweep"]
    curves = metric_figures(at)
    assert sorted(curves) == sorted(f"Client {client} · {task}" for client, task in PANELS)
    # Each task shows its main metric: accuracy for classification, mse for generation.
    assert curves[f"Client 1 · {CLASSIFY}"]["layout"]["yaxis"]["title"]["text"] == "accuracy"
    assert curves[f"Client 1 · {GENERATE}"]["layout"]["yaxis"]["title"]["text"] == "mse"
    for figure in curves.values():
        lines = {trace["name"]: trace["line"]["dash"] for trace in figure["data"]}
        assert lines == {
            "global · local": "solid",
            "global · pooled": "dash",
            "personal · local": "solid",
            "personal · pooled": "dash",
            "final · local": "solid",
            "final · pooled": "dash",
        }
    losses = loss_figures(at)
    assert sorted(losses) == ["Client 0", "Client 1", "Client 2"]
    assert len(losses["Client 1"]["data"]) == 4  # two models x two tasks
    assert "solid: local test data (personalization)" in all_text(at)
    assert at.download_button[0].label == "Download these metrics (CSV)"


def test_run_page_asks_the_api_for_just_the_metric_shown(
    open_page: OpenPage, fake_api: FakeApi
) -> None:
    at = open_page(RUN, run="1")
    at.selectbox(key="metric_1").set_value("loss").run()
    assert not at.exception
    curves = metric_figures(at)
    assert len(curves) == len(PANELS)  # every task reports a loss
    assert {f["layout"]["yaxis"]["title"]["text"] for f in curves.values()} == {"loss"}
    assert asked(fake_api, "/runs/1/metrics", metric="loss")

    at.selectbox(key="metric_1").set_value("accuracy").run()
    assert sorted(metric_figures(at)) == [f"Client 0 · {CLASSIFY}", f"Client 1 · {CLASSIFY}"]


def test_one_client_and_one_model_are_filtered_by_the_api(
    open_page: OpenPage, fake_api: FakeApi
) -> None:
    at = open_page(RUN, run="1")
    at.multiselect(key="clients_1").set_value([2]).run()
    at.pills(key="models_1_final-global-personal").set_value(["personal"]).run()
    assert not at.exception
    curves = metric_figures(at)
    assert list(curves) == [f"Client 2 · {GENERATE}"]
    names = [trace["name"] for trace in curves[f"Client 2 · {GENERATE}"]["data"]]
    assert names == ["personal · local", "personal · pooled"]
    assert asked(fake_api, "/runs/1/metrics", metric="mse", client="2", model="personal")


def test_running_run_shows_progress_and_can_be_cancelled(
    open_page: OpenPage, fake_api: FakeApi
) -> None:
    at = open_page(RUN, run="2")
    assert "fl · round 2/4 · ETA 1m 35s" in [p.proto.text for p in at.get("progress")]
    assert "running" in all_text(at)
    at.button(key="cancel_2").click().run()
    assert not at.exception
    assert fake_api.state.runs[2]["status"] == "cancelling"
    assert "cancelling" in all_text(at)


def test_failed_run_shows_its_error_and_says_there_are_no_curves(open_page: OpenPage) -> None:
    at = open_page(RUN, run="3")
    assert "The run failed" in all_text(at)
    assert "RuntimeError: CUDA out of memory" in texts(at, "code")
    assert "No evaluations yet" in all_text(at)
    assert not at.get("plotly_chart")
    assert at.button(key="retry_3").label == "Retry"


def test_run_picker_follows_the_query_param_and_writes_it_back(open_page: OpenPage) -> None:
    at = open_page(RUN)
    assert at.query_params["run"] == "4"  # no ?run=: the newest run
    at.selectbox(key="run_pick").set_value(1).run()
    assert at.query_params["run"] == "1"
    assert texts(at, "title") == ["Run #1 · demo-sweep"]


def test_unknown_run_says_not_found(open_page: OpenPage) -> None:
    at = open_page(RUN, run="99")
    assert "Run 99 not found" in all_text(at)


# -- submit --------------------------------------------------------------------------------------


def column_with(at: AppTest, label: str):  # type: ignore[no-untyped-def]
    """The column block holding the widget labelled ``label``."""
    for column in at.columns:
        if any(w.label == label for w in [*column.number_input, *column.text_input]):
            return column
        if any(w.label == label for w in column.selectbox):
            return column
    raise AssertionError(f"no column holds {label!r}")


def test_submit_shows_the_apis_422_under_the_field(open_page: OpenPage, fake_api: FakeApi) -> None:
    at = open_page(SUBMIT)
    at.number_input[0].set_value(0)
    at.button[0].click().run()
    assert not at.exception
    rounds = column_with(at, "Rounds")
    assert len(rounds.error) == 1
    assert "greater than or equal to 1" in rounds.error[0].value
    # Under Rounds, not at the top: the other column and the page's general slot stay clean.
    assert not column_with(at, "Seed").error
    assert not fake_api.state.experiments[2:]  # nothing was created


def test_submit_unknown_algorithm_error_lands_under_algorithm(
    open_page: OpenPage, fake_api: FakeApi
) -> None:
    fake_api.state.algorithms = {"tap", "fedavg"}  # this API does not know "local"
    at = open_page(SUBMIT)
    at.selectbox[1].set_value("local")
    at.button[0].click().run()
    algorithm = column_with(at, "Algorithm")
    assert len(algorithm.error) == 1
    assert "Unknown algorithm 'local'; known: fedavg, tap" in algorithm.error[0].value
    assert not column_with(at, "Rounds").error


def test_submit_error_about_the_presets_own_config_shows_above_submit(
    open_page: OpenPage,
) -> None:
    at = open_page(SUBMIT)
    at.selectbox[0].set_value("paper-vilt")
    at.button[0].click().run()
    assert texts(at, "error") == ["`preset.backbone.name`: no local copy of dandelin/vilt-b32-mlm"]


def test_submit_rejects_a_seed_that_is_not_a_number(open_page: OpenPage) -> None:
    at = open_page(SUBMIT)
    at.text_input[1].input("forty-two")
    at.button[0].click().run()
    assert "whole numbers" in column_with(at, "Seed").error[0].value


def test_submit_a_seed_sweep_links_each_new_run(open_page: OpenPage, fake_api: FakeApi) -> None:
    at = open_page(SUBMIT)
    at.text_input[0].input("my sweep")
    at.selectbox[1].set_value("tap")
    at.text_input[1].input("41, 42")
    at.number_input[0].set_value(3)
    at.button[0].click().run()
    assert not at.exception
    assert not at.error
    assert "Experiment #3 **my sweep** created with 2 runs." in texts(at, "success")
    links = at.get("page_link")
    assert [link.proto.label for link in links] == [
        "Open run #5 (tap, seed 41)",
        "Open run #6 (tap, seed 42)",
    ]
    created = fake_api.state.experiments[-1]
    assert [run["total_rounds"] for run in created["runs"]] == [3, 3]


# -- connection ------------------------------------------------------------------------------------


def fresh_app() -> AppTest:
    st.cache_data.clear()
    st.cache_resource.clear()
    return AppTest.from_file(str(APP), default_timeout=30).run()


@pytest.mark.usefixtures("fake_api")
def test_unreachable_api_shows_a_friendly_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPFL_API_URL", f"http://127.0.0.1:{unused_port()}")
    at = fresh_app()
    assert not at.exception
    assert "Cannot reach the tapfl API" in texts(at, "error")[0]
    assert not at.dataframe  # the page itself did not run


@pytest.mark.usefixtures("fake_api")
def test_missing_token_says_to_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAPFL_TOKEN")
    at = fresh_app()
    assert not at.exception
    assert "No API token" in texts(at, "error")[0]


@pytest.mark.usefixtures("fake_api")
def test_refused_token_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPFL_TOKEN", "wrong")
    at = fresh_app()
    assert not at.exception
    assert "refused the token" in texts(at, "error")[0]


def test_degraded_api_warns_but_pages_still_work(open_page: OpenPage, fake_api: FakeApi) -> None:
    fake_api.state.health = {"status": "degraded", "database": True, "redis": False}
    at = open_page()
    assert any("cannot reach Redis" in w for w in texts(at.sidebar, "warning"))
    assert len(at.dataframe[0].value) == 4


def test_api_going_down_mid_session_is_reported_in_the_page(
    open_page: OpenPage, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page(RUN, run="1")
    monkeypatch.setenv("TAPFL_API_URL", f"http://127.0.0.1:{unused_port()}")
    at.run()
    assert not at.exception
    assert any("Cannot reach the tapfl API" in e for e in texts(at, "error"))
