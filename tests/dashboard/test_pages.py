"""Each page, rendered by Streamlit's AppTest against the fake API on loopback."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.dashboard.conftest import APP, unused_port
from tests.dashboard.fake_tapfl_api import (
    CLASSIFY,
    GENERATE,
    PANELS,
    FakeApi,
    FakeState,
    canned_steps,
    large_run_state,
)

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


def title_of(figure: dict[str, Any]) -> str:
    return figure["layout"].get("title", {}).get("text", "")


def metric_figures(at: AppTest) -> dict[str, dict[str, Any]]:
    """Curve charts by title ("Client 1 · task"); loss charts are titled "Client 1"."""
    return {title_of(f): f for f in figures(at) if " · " in title_of(f)}


def loss_figures(at: AppTest) -> dict[str, dict[str, Any]]:
    return {title_of(f): f for f in figures(at) if title_of(f).startswith("Client ")
            and " · " not in title_of(f)}  # fmt: skip


def array(values: Any) -> list[Any]:
    """A plotly JSON array: a list, or numpy data packed as ``{"dtype", "bdata"}``."""
    if isinstance(values, dict) and "bdata" in values:
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)


def curve_lines(figure: dict[str, Any]) -> dict[str, str]:
    """Trace name -> dash of every curve (not the replacement markers)."""
    return {t["name"]: t["line"]["dash"] for t in figure["data"] if t["name"] != "replacement"}


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
        assert curve_lines(figure) == {
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
    names = list(curve_lines(curves[f"Client 2 · {GENERATE}"]))
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
        widgets = [*column.number_input, *column.text_input, *column.selectbox]
        if any(w.label == label for w in [*widgets, *column.multiselect]):
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
    at.multiselect[0].set_value(["local"])
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
    at.multiselect[0].set_value(["tap"])
    at.text_input[1].input("41, 42")
    at.number_input(key="submit_rounds").set_value(3)
    at.button[0].click().run()
    assert not at.exception
    assert not at.error
    assert "Experiment #3 **my sweep** created with 2 runs." in texts(at, "success")
    links = at.get("page_link")
    assert [link.proto.label for link in links] == [
        "Watch them on the Runs page",
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


# -- runs: filters, search and actions ------------------------------------------------------------


def test_runs_table_shows_each_runs_owner(open_page: OpenPage) -> None:
    table = open_page().dataframe[0].value
    assert list(table["owner"]) == ["tester"] * 4


def test_search_and_algorithm_filter_narrow_the_table(
    open_page: OpenPage, fake_api: FakeApi
) -> None:
    fake_api.state.runs[4]["algorithm"] = "fedavg"
    at = open_page()
    at.text_input(key="runs_search").input("broken").run()
    assert list(at.dataframe[0].value["run"]) == ["run?run=4", "run?run=3"]
    at.multiselect(key="runs_algorithms").set_value(["fedavg"]).run()
    assert list(at.dataframe[0].value["run"]) == ["run?run=4"]
    at.text_input(key="runs_search").input("seed 42").run()
    assert not at.dataframe
    assert "No run matches these filters." in all_text(at)


def select_rows(at: AppTest, *rows: int) -> AppTest:
    at.session_state["runs_table"] = {"selection": {"rows": list(rows), "columns": []}}
    return at.run()


def test_selected_rows_can_be_cancelled_and_retried(open_page: OpenPage, fake_api: FakeApi) -> None:
    at = select_rows(open_page(), 1, 2)  # run 3 (failed) and run 2 (running)
    assert at.button(key="runs_cancel").label == "Cancel (1)"
    assert at.button(key="runs_retry").label == "Retry (1)"
    at.button(key="runs_cancel").click().run()
    assert not at.exception
    assert fake_api.state.runs[2]["status"] == "cancelling"
    assert fake_api.state.runs[3]["status"] == "failed"  # only the cancellable one
    assert "1 run cancelled." in texts(at, "success")

    at = select_rows(at, 1)  # run 3
    at.button(key="runs_retry").click().run()
    assert fake_api.state.runs[3]["status"] == "queued"
    assert "1 run queued again." in texts(at, "success")


def test_one_selected_row_links_to_its_run_and_finished_runs_cannot_be_cancelled(
    open_page: OpenPage,
) -> None:
    at = select_rows(open_page(), 3)  # run 1, succeeded
    assert [link.proto.label for link in at.get("page_link")] == ["Open run #1"]
    assert at.button(key="runs_cancel").disabled
    assert at.button(key="runs_retry").disabled


def test_a_refused_action_says_why(open_page: OpenPage, fake_api: FakeApi) -> None:
    at = select_rows(open_page(), 2)  # run 2, running
    fake_api.state.runs[2]["status"] = "succeeded"  # finished meanwhile: the API says 409
    at.button(key="runs_cancel").click().run()
    assert not at.exception
    assert any("run 2 is succeeded: nothing to cancel" in w for w in texts(at, "warning"))


# -- run: replacements, stage 2, logs, many clients --------------------------------------------


def test_replacements_are_marked_on_the_curves_and_listed(open_page: OpenPage) -> None:
    at = open_page(RUN, run="1")
    curves = metric_figures(at)
    markers = {
        title: [t for t in f["data"] if t["name"] == "replacement"] for title, f in curves.items()
    }
    # canned_replacements: client 0's classification at round 2, client 1's generation at 6 ...
    assert markers[f"Client 0 · {CLASSIFY}"][0]["x"] == [2]
    assert markers[f"Client 1 · {GENERATE}"][0]["x"] == [6]
    assert not markers[f"Client 1 · {CLASSIFY}"]
    timeline = [f for f in figures(at) if f["layout"].get("yaxis", {}).get("title", {}).get(
        "text") == "client"]  # fmt: skip
    assert timeline, "no replacement timeline"
    assert {x for trace in timeline[0]["data"] for x in array(trace["x"])} == {2, 6}
    assert "▲" in all_text(at)  # the legend explains the markers


def test_stage_two_final_models_stand_out(open_page: OpenPage) -> None:
    figure = metric_figures(open_page(RUN, run="1"))[f"Client 0 · {CLASSIFY}"]
    sizes = {t["name"]: t["marker"]["size"] for t in figure["data"] if t["name"] != "replacement"}
    assert sizes["final · local"] > sizes["personal · local"]
    assert [a["text"] for a in figure["layout"]["annotations"]] == ["stage 2"]


def test_an_api_without_replacements_says_so_and_still_draws(
    open_page: OpenPage, fake_api: FakeApi
) -> None:
    fake_api.state.missing.add("replacements")
    at = open_page(RUN, run="1")
    assert not at.exception
    assert len(metric_figures(at)) == len(PANELS)
    assert any("does not serve them" in c for c in texts(at, "caption"))


def step_figures(at: AppTest) -> dict[str, dict[str, Any]]:
    return {title_of(f): f for f in figures(at) if title_of(f).endswith(" · stage 2")}


def test_stage_two_step_by_step_shows_teacher_student_and_kd_per_client(
    open_page: OpenPage, fake_api: FakeApi
) -> None:
    fake_api.state.steps[1] = canned_steps(steps=4)
    at = open_page(RUN, run="1")
    assert "Stage 2 step by step" in texts(at, "subheader")
    assert any("added to the student's loss" in c for c in texts(at, "caption"))
    charts = step_figures(at)
    assert sorted(charts) == ["Client 0 · stage 2", "Client 1 · stage 2", "Client 2 · stage 2"]
    traces = {t["name"]: t for t in charts["Client 1 · stage 2"]["data"]}
    assert sorted(traces) == sorted(
        f"{who} · {task}"
        for who in ("teacher", "student", "student λ·KD")
        for task in (CLASSIFY, GENERATE)
    )
    # λ·KD (0.002 / step) beside task losses of about 2: a log axis shows both.
    assert charts["Client 1 · stage 2"]["layout"]["yaxis"]["type"] == "log"
    kd = traces[f"student λ·KD · {CLASSIFY}"]
    assert array(kd["x"]) == [1, 2, 3, 4]
    assert array(kd["y"]) == pytest.approx([0.002, 0.001, 0.000667, 0.0005])
    assert traces[f"teacher · {CLASSIFY}"]["line"]["color"] != kd["line"]["color"]
    assert asked(fake_api, "/runs/1/steps")


def test_no_stage_two_section_for_a_run_without_steps_or_an_api_without_them(
    open_page: OpenPage, fake_api: FakeApi
) -> None:
    at = open_page(RUN, run="1")
    assert asked(fake_api, "/runs/1/steps")  # asked, and there were none
    assert "Stage 2 step by step" not in texts(at, "subheader")
    assert not step_figures(at)
    assert len(loss_figures(at)) == 3  # the page around it is whole

    fake_api.state.missing.add("steps")
    at = open_page(RUN, run="1")
    assert not at.exception
    assert "Stage 2 step by step" not in texts(at, "subheader")
    assert len(metric_figures(at)) == len(PANELS)


def test_the_constant_answer_is_a_grey_dotted_chance_line_named_in_the_legend(
    open_page: OpenPage, fake_api: FakeApi
) -> None:
    rows = fake_api.state.metrics[1]
    for model, value in (("personal", 0.4), ("constant", 0.1)):
        for r, split in ((r, split) for r in (0, 2, 4) for split in ("local", "pooled")):
            key = {"round": r, "stage": "fl", "client": 1, "task": GENERATE, "split": split}
            rows.append({**key, "model": model, "metric": "exact_match", "value": value, "n": 50})
    at = open_page(RUN, run="1")
    assert "constant answer (chance)" not in all_text(at)  # not in the charts shown yet
    at.selectbox(key="metric_1").set_value("exact_match").run()
    assert not at.exception
    figure = metric_figures(at)[f"Client 1 · {GENERATE}"]
    lines = {t["name"]: t["line"] for t in figure["data"] if t["name"] != "replacement"}
    constant = lines["constant answer (chance) · local"]
    assert constant["dash"] == "dot" and lines["constant answer (chance) · pooled"]["dash"] != "dot"
    others = {line["color"] for name, line in lines.items() if not name.startswith("constant")}
    assert constant["color"] not in others
    assert lines["personal · local"]["dash"] == "solid"
    assert "constant answer (chance)" in all_text(at)
    assert "most frequent training answer" in all_text(at)


def test_logs_show_the_runs_lines_by_level(open_page: OpenPage, fake_api: FakeApi) -> None:
    at = open_page(RUN, run="1")
    log = texts(at, "code")[-1]
    assert "[worker] taken by worker w1" in log
    assert "[engine] client 2: few test samples" in log
    at.segmented_control(key="log_level_1").set_value("WARNING").run()
    log = texts(at, "code")[-1]
    assert "taken by worker" not in log
    assert "few test samples" in log
    assert asked(fake_api, "/runs/1/logs", level="WARNING")


def test_a_thirty_client_run_draws_a_page_of_clients_filtered_by_the_api(
    open_page: OpenPage, fake_api: FakeApi
) -> None:
    fake_api.reset(large_run_state(clients=30, rounds=20))
    at = open_page(RUN, run="1")
    assert not at.exception
    titles = sorted(metric_figures(at))
    # clients 0-8, every third with a second (generation) task
    assert len(titles) == 9 + 3
    assert {int(t.split()[1]) for t in titles} == set(range(9))
    assert sorted(loss_figures(at)) == sorted(f"Client {c}" for c in range(9))
    assert asked(fake_api, "/runs/1/metrics", client="8", metric="accuracy")
    assert asked(fake_api, "/runs/1/losses", client="8")
    # The facets came from the first evaluation round and stage 2, not the whole run.
    assert asked(fake_api, "/runs/1/metrics", round_max="1")
    assert not any(set(q) <= {"limit", "offset"} for q in fake_api.state.queries("/runs/1/metrics"))

    at.segmented_control(key="client_page_1_30").set_value(3).run()
    assert {int(t.split()[1]) for t in metric_figures(at)} == set(range(27, 30))


# -- submit: hyperparameters and sweeps -----------------------------------------------------------


def test_sweep_preview_counts_algorithms_times_seeds(open_page: OpenPage) -> None:
    at = open_page(SUBMIT)
    assert "**1 run** will be queued" in texts(at, "info")[0]
    at.multiselect[0].set_value(["tap", "fedavg"])
    at.text_input[1].input("41, 42, 43").run()
    assert texts(at, "info")[0].startswith("**6 runs** will be queued: tap, fedavg for seeds")


def test_hyperparameter_errors_land_under_their_fields(
    open_page: OpenPage, fake_api: FakeApi
) -> None:
    at = open_page(SUBMIT)
    at.number_input(key="submit_clients_per_round").set_value(10)
    at.number_input(key="submit_kd_lambda").set_value(-1.0)
    at.button[0].click().run()
    assert not at.exception
    assert "less than or equal to 6" in column_with(at, "Clients per round").error[0].value
    assert "greater than or equal to 0" in column_with(at, "λ (distillation weight)").error[0].value
    assert not column_with(at, "Rounds").error
    assert len(fake_api.state.experiments) == 2  # nothing was created


def test_a_sweep_over_algorithms_and_seeds_sends_every_hyperparameter(
    open_page: OpenPage, fake_api: FakeApi
) -> None:
    at = open_page(SUBMIT)
    at.multiselect[0].set_value(["tap", "local"])
    at.text_input[1].input("1 2")
    for key, value in (("rounds", 2), ("clients_per_round", 3), ("local_steps", 2),
                       ("post_iterations", 1), ("eval_every", 1)):  # fmt: skip
        at.number_input(key=f"submit_{key}").set_value(value)
    at.number_input(key="submit_kd_lambda").set_value(0.01)
    at.number_input(key="submit_margin_image_classification").set_value(0.02)
    at.button[0].click().run()
    assert not at.exception and not at.error
    runs = fake_api.state.experiments[-1]["runs"]
    assert [(r["algorithm"], r["seed"]) for r in runs] == [
        ("tap", 1), ("tap", 2), ("local", 1), ("local", 2)
    ]  # fmt: skip
    config = runs[0]["config"]
    assert config["rounds"] == 2 and config["local_steps"] == 2 and config["eval_every"] == 1
    assert config["kd_lambda"] == 0.01
    assert config["margins"] == {"image_classification": 0.02}
