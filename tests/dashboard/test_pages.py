"""Each page, rendered by Streamlit's AppTest against the real API on loopback, with the
results of real engine runs (``real_runs.py``). What a page should show is read from the
API itself; which requests it made (the filters go to the server) from the API's log."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboard import real_runs
from tests.dashboard.conftest import APP, Dashboard, render, unused_port

OpenPage = Callable[..., AppTest]
RUN = "app_pages/run.py"
SUBMIT = "app_pages/submit.py"
CLASSIFY, GENERATE = real_runs.CLASSIFY, real_runs.GENERATE
VQA = "shapes_vqa"  # the demo's text-generation task: the engine reports a constant answer
MAIN_METRICS = {CLASSIFY: "accuracy", GENERATE: "mse", VQA: "chrf"}


def texts(at: AppTest, kind: str) -> list[str]:
    return [str(element.value) for element in getattr(at, kind)]


def all_text(at: AppTest) -> str:
    kinds = ("title", "markdown", "caption", "error", "warning", "info", "success", "code")
    return "\n".join(text for kind in kinds for text in texts(at, kind))


def figures(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def title_of(figure: dict[str, Any]) -> str:
    return figure["layout"].get("title", {}).get("text", "")


def metric_figures(at: AppTest) -> dict[str, dict[str, Any]]:
    """Curve charts by title ("Client 1 · task"); loss charts are titled "Client 1"."""
    return {
        title_of(f): f
        for f in figures(at)
        if " · " in title_of(f) and not title_of(f).endswith(" · stage 2")
    }


def loss_figures(at: AppTest) -> dict[str, dict[str, Any]]:
    return {title_of(f): f for f in figures(at) if re.fullmatch(r"Client \d+", title_of(f))}


def array(values: Any) -> list[Any]:
    """A plotly JSON array: a list, or numpy data packed as ``{"dtype", "bdata"}``."""
    if isinstance(values, dict) and "bdata" in values:
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)


def curves_of(figure: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Trace name -> trace of every curve (not the replacement markers)."""
    return {t["name"]: t for t in figure["data"] if t["name"] != "replacement"}


def rows(dashboard: Dashboard, path: str, **params: Any) -> list[dict[str, Any]]:
    return dashboard.api.call("GET", path, params=params)["items"]


def panels_of(metrics: list[dict[str, Any]]) -> list[str]:
    return sorted({f"Client {row['client']} · {row['task']}" for row in metrics})


def tap_run(dashboard: Dashboard) -> int:
    return dashboard.runs.sweep.tap[0]


def fedavg_run(dashboard: Dashboard) -> int:
    return dashboard.runs.sweep.fedavg[0]


def run_status(dashboard: Dashboard, run_id: int) -> str:
    return dashboard.api.call("GET", f"/runs/{run_id}")["status"]


def experiments_total(dashboard: Dashboard) -> int:
    return dashboard.api.call("GET", "/experiments", params={"limit": 1})["total"]


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


# -- run ---------------------------------------------------------------------------------------


def test_run_page_draws_a_chart_per_client_and_task(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    run_id = tap_run(dashboard)
    at = open_page(RUN, run=str(run_id))
    assert texts(at, "title") == [f"Run #{run_id} · curves"]
    curves = metric_figures(at)
    assert sorted(curves) == panels_of(rows(dashboard, f"/runs/{run_id}/metrics"))
    # Each task shows its main metric: accuracy, mse for images, chrF for text answers.
    for title, figure in curves.items():
        task = title.split(" · ")[1]
        if task in MAIN_METRICS:
            assert figure["layout"]["yaxis"]["title"]["text"] == MAIN_METRICS[task], title
    for title, figure in curves.items():
        for name, trace in curves_of(figure).items():
            if name.startswith("constant"):
                continue
            expected = "solid" if " · local" in name else "dash"
            assert trace["line"]["dash"] == expected, (title, name)
    models = {name.split(" · ")[0] for name in curves_of(curves[f"Client 2 · {CLASSIFY}"])}
    assert models == {"global", "personal", "global_ft", "final"}
    losses = rows(dashboard, f"/runs/{run_id}/losses")
    drawn = loss_figures(at)
    assert sorted(drawn) == sorted({f"Client {row['client']}" for row in losses})
    client_2 = {(r["stage"], r["model"], r["task"]) for r in losses if r["client"] == 2}
    assert len(drawn["Client 2"]["data"]) == len(client_2)  # a line per model and task
    assert "solid: local test data (personalization)" in all_text(at)
    assert at.download_button[0].label == "Download these metrics (CSV)"


def test_run_page_asks_the_api_for_just_the_metric_shown(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    run_id = tap_run(dashboard)
    at = open_page(RUN, run=str(run_id))
    at.selectbox(key=f"metric_{run_id}").set_value("loss").run()
    assert not at.exception
    curves = metric_figures(at)
    assert sorted(curves) == panels_of(rows(dashboard, f"/runs/{run_id}/metrics", metric="loss"))
    assert {f["layout"]["yaxis"]["title"]["text"] for f in curves.values()} == {"loss"}
    assert dashboard.asked(f"/runs/{run_id}/metrics", metric="loss")

    at.selectbox(key=f"metric_{run_id}").set_value("accuracy").run()
    accuracy = rows(dashboard, f"/runs/{run_id}/metrics", metric="accuracy")
    assert sorted(metric_figures(at)) == panels_of(accuracy)


def test_one_client_and_one_model_are_filtered_by_the_api(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    run_id = tap_run(dashboard)
    at = open_page(RUN, run=str(run_id))
    at.multiselect(key=f"clients_{run_id}").set_value([2]).run()
    models = next(p for p in at.get("button_group") if p.label == "Models")
    models.set_value(["personal"]).run()
    assert not at.exception
    curves = metric_figures(at)
    assert sorted(curves) == [f"Client 2 · {CLASSIFY}", f"Client 2 · {GENERATE}"]
    for figure in curves.values():
        assert list(curves_of(figure)) == ["personal · local", "personal · pooled"]
    path = f"/runs/{run_id}/metrics"
    assert dashboard.asked(path, metric="mse", client="2", model="personal")
    assert dashboard.asked(path, metric="accuracy", client="2", model="personal")


def test_running_run_shows_progress_and_can_be_cancelled(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    run_id = real_runs.make_running(dashboard.api, "cancel-from-run-page")
    at = open_page(RUN, run=str(run_id))
    assert "fl · round 1/2 · ETA 1m 35s" in [p.proto.text for p in at.get("progress")]
    assert "running" in all_text(at)
    at.button(key=f"cancel_{run_id}").click().run()
    assert not at.exception
    assert run_status(dashboard, run_id) == "cancelling"
    assert "cancelling" in all_text(at)


def test_failed_run_shows_its_error_and_says_there_are_no_curves(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    run_id = dashboard.runs.states.failed
    at = open_page(RUN, run=str(run_id))
    assert "The run failed" in all_text(at)
    assert real_runs.OOM in texts(at, "code")
    assert "No evaluations yet" in all_text(at)
    assert not at.get("plotly_chart")
    assert at.button(key=f"retry_{run_id}").label == "Retry"


def test_run_picker_follows_the_query_param_and_writes_it_back(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    newest = rows(dashboard, "/runs", limit=1)[0]["id"]
    at = open_page(RUN)
    assert at.query_params["run"] == str(newest)  # no ?run=: the newest run
    run_id = tap_run(dashboard)
    at.selectbox(key="run_pick").set_value(run_id).run()
    assert at.query_params["run"] == str(run_id)
    assert texts(at, "title") == [f"Run #{run_id} · curves"]


def test_unknown_run_says_not_found(open_page: OpenPage) -> None:
    at = open_page(RUN, run="99999")
    assert "run 99999 not found" in all_text(at)


# -- submit --------------------------------------------------------------------------------------


def column_with(at: AppTest, label: str):  # type: ignore[no-untyped-def]
    """The column block holding the widget labelled ``label``."""
    for column in at.columns:
        widgets = [*column.number_input, *column.text_input, *column.selectbox]
        if any(w.label == label for w in [*widgets, *column.multiselect]):
            return column
    raise AssertionError(f"no column holds {label!r}")


def submit(at: AppTest) -> AppTest:
    at.button[0].click().run()
    assert not at.exception
    return at


def test_submit_shows_the_apis_422_under_the_field(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    before = experiments_total(dashboard)
    at = open_page(SUBMIT)
    at.number_input(key="submit_rounds").set_value(0)
    submit(at)
    rounds = column_with(at, "Rounds")
    assert len(rounds.error) == 1
    assert "greater than 0" in rounds.error[0].value
    # Under Rounds, not at the top: the other column and the page's general slot stay clean.
    assert not column_with(at, "Seed").error
    assert experiments_total(dashboard) == before  # nothing was created


def test_submit_offers_the_algorithms_of_the_apis_catalog(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    catalog = dashboard.api.call("GET", "/catalog")
    at = open_page(SUBMIT)
    algorithm = next(w for w in at.multiselect if w.label == "Algorithm")
    assert list(algorithm.options) == [a["name"] for a in catalog["algorithms"]]
    assert dashboard.asked("/catalog")


def test_submit_unknown_algorithm_error_lands_under_algorithm(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    before = experiments_total(dashboard)
    at = open_page(SUBMIT)
    at.multiselect[0].set_value(["fedprox"])  # typed in: the API has the final word
    submit(at)
    algorithm = column_with(at, "Algorithm")
    assert len(algorithm.error) == 1
    assert "unknown algorithm 'fedprox'; choose one of tap" in algorithm.error[0].value
    assert not column_with(at, "Rounds").error
    assert experiments_total(dashboard) == before


def test_submit_error_about_the_request_as_a_whole_shows_above_submit(
    open_page: OpenPage,
) -> None:
    at = open_page(SUBMIT)
    at.text_input[1].input(" ".join(str(seed) for seed in range(257)))  # one run too many
    submit(at)
    assert texts(at, "error") == [
        "`sweep`: the sweep gives 257 runs; at most 256 fit in one experiment"
    ]


def test_submit_rejects_a_seed_that_is_not_a_number(open_page: OpenPage) -> None:
    at = open_page(SUBMIT)
    at.text_input[1].input("forty-two")
    at.button[0].click().run()
    assert "whole numbers" in column_with(at, "Seed").error[0].value


def test_submit_a_seed_sweep_links_each_new_run(open_page: OpenPage, dashboard: Dashboard) -> None:
    at = open_page(SUBMIT)
    at.text_input[0].input("my sweep")
    at.multiselect[0].set_value(["tap"])
    at.text_input[1].input("41, 42")
    at.number_input(key="submit_rounds").set_value(3)
    submit(at)
    assert not at.error
    [created] = texts(at, "success")
    found = re.fullmatch(r"Experiment #(\d+) \*\*my sweep\*\* created with 2 runs\.", created)
    assert found, created
    experiment = dashboard.api.call("GET", f"/experiments/{found[1]}")
    first, second = (run["id"] for run in experiment["runs"])
    assert [link.proto.label for link in at.get("page_link")] == [
        "Watch them on the Runs page",
        f"Open run #{first} (tap, seed 41)",
        f"Open run #{second} (tap, seed 42)",
    ]
    assert [run["total_rounds"] for run in experiment["runs"]] == [3, 3]


# -- connection ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("dashboard")
def test_unreachable_api_shows_a_friendly_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPFL_API_URL", f"http://127.0.0.1:{unused_port()}")
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    assert not at.exception
    assert "Cannot reach the tapfl API" in texts(at, "error")[0]
    assert not at.dataframe  # the page itself did not run


@pytest.mark.usefixtures("dashboard")
def test_missing_token_says_to_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TAPFL_TOKEN")
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    assert not at.exception
    assert "No API token" in texts(at, "error")[0]


@pytest.mark.usefixtures("dashboard")
def test_refused_token_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPFL_TOKEN", "wrong")
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    assert not at.exception
    assert "refused the token" in texts(at, "error")[0]


def test_degraded_api_warns_but_pages_still_work(open_page: OpenPage) -> None:
    # The session's API has no Redis: its health says degraded, and pages read SQL anyway.
    at = open_page()
    assert any("cannot reach Redis" in w for w in texts(at.sidebar, "warning"))
    assert len(at.dataframe[0].value) > 0


def test_api_going_down_mid_session_is_reported_in_the_page(
    open_page: OpenPage, dashboard: Dashboard, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page(RUN, run=str(tap_run(dashboard)))
    monkeypatch.setenv("TAPFL_API_URL", f"http://127.0.0.1:{unused_port()}")
    at.run()
    assert not at.exception
    assert any("Cannot reach the tapfl API" in e for e in texts(at, "error"))


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
    assert not at.exception
    assert any(f"run {run_id} already succeeded" in w for w in texts(at, "warning"))


# -- run: replacements, stage 2, logs, many clients --------------------------------------------


def test_replacements_are_marked_on_the_curves_and_listed(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    run_id = tap_run(dashboard)
    events = rows(dashboard, f"/runs/{run_id}/replacements")
    assert events, "the TAP run replaced no model"
    at = open_page(RUN, run=str(run_id))
    for title, figure in metric_figures(at).items():
        client, task = title.removeprefix("Client ").split(" · ")
        expected = sorted(
            e["round"] for e in events if e["client"] == int(client) and e["task"] == task
        )
        markers = [t for t in figure["data"] if t["name"] == "replacement"]
        assert [array(m["x"]) for m in markers] == ([expected] if expected else []), title
    timeline = [
        f
        for f in figures(at)
        if f["layout"].get("yaxis", {}).get("title", {}).get("text") == "client"
    ]
    assert timeline, "no replacement timeline"
    drawn = {x for trace in timeline[0]["data"] for x in array(trace["x"])}
    assert drawn == {e["round"] for e in events}
    assert "▲" in all_text(at)  # the legend explains the markers


def test_stage_two_final_models_stand_out(open_page: OpenPage, dashboard: Dashboard) -> None:
    figure = metric_figures(open_page(RUN, run=str(tap_run(dashboard))))[f"Client 0 · {CLASSIFY}"]
    sizes = {name: t["marker"]["size"] for name, t in curves_of(figure).items()}
    final = next(size for name, size in sizes.items() if name.startswith("final · local"))
    personal = next(size for name, size in sizes.items() if name.startswith("personal · local"))
    assert final > personal
    assert [a["text"] for a in figure["layout"]["annotations"]] == ["stage 2"]


def step_figures(at: AppTest) -> dict[str, dict[str, Any]]:
    return {title_of(f): f for f in figures(at) if title_of(f).endswith(" · stage 2")}


def test_stage_two_step_by_step_shows_teacher_student_and_kd_per_client(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    run_id = tap_run(dashboard)
    steps = rows(dashboard, f"/runs/{run_id}/steps")
    at = open_page(RUN, run=str(run_id))
    assert "Stage 2 step by step" in texts(at, "subheader")
    assert any("added to the student's loss" in c for c in texts(at, "caption"))
    charts = step_figures(at)
    assert sorted(charts) == sorted({f"Client {row['client']} · stage 2" for row in steps})
    traces = {t["name"]: t for t in charts["Client 2 · stage 2"]["data"]}
    assert sorted(traces) == sorted(
        f"{who} · {task}"
        for who in ("teacher", "student", "student λ·KD")
        for task in (CLASSIFY, GENERATE)
    )
    # λ·KD is far smaller than the task losses: a log axis shows both.
    assert charts["Client 2 · stage 2"]["layout"]["yaxis"]["type"] == "log"
    kd_rows = sorted(
        (row["step"], row["value"])
        for row in steps
        if (row["client"], row["term"], row["task"]) == (2, "kd", CLASSIFY)
    )
    kd = traces[f"student λ·KD · {CLASSIFY}"]
    assert array(kd["x"]) == [step for step, _ in kd_rows] == [1, 2]
    assert array(kd["y"]) == pytest.approx([value for _, value in kd_rows])
    assert traces[f"teacher · {CLASSIFY}"]["line"]["color"] != kd["line"]["color"]
    assert dashboard.asked(f"/runs/{run_id}/steps")


def test_no_stage_two_section_for_a_run_without_steps(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    run_id = fedavg_run(dashboard)  # FedAvg reports no stage-2 steps
    assert not rows(dashboard, f"/runs/{run_id}/steps")
    at = open_page(RUN, run=str(run_id))
    assert dashboard.asked(f"/runs/{run_id}/steps")  # asked, and there were none
    assert "Stage 2 step by step" not in texts(at, "subheader")
    assert not step_figures(at)
    assert loss_figures(at)  # the page around it is whole


def test_the_constant_answer_is_a_grey_dotted_chance_line_named_in_the_legend(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    run_id = tap_run(dashboard)
    at = open_page(RUN, run=str(run_id))
    figure = metric_figures(at)[f"Client 4 · {VQA}"]  # text answers: chrF beside chance
    lines = {name: t["line"] for name, t in curves_of(figure).items()}
    chance = "constant answer (chance)"
    local = [line for name, line in lines.items() if name.startswith(f"{chance} · local")]
    pooled = [line for name, line in lines.items() if name.startswith(f"{chance} · pooled")]
    assert local and pooled
    assert {line["dash"] for line in local} == {"dot"}
    assert "dot" not in {line["dash"] for line in pooled}
    others = {line["color"] for name, line in lines.items() if not name.startswith("constant")}
    assert local[0]["color"] not in others
    assert "constant answer (chance)" in all_text(at)
    assert "most frequent training answer" in all_text(at)

    at.selectbox(key=f"metric_{run_id}").set_value("accuracy").run()  # no text task reports it
    assert not at.exception
    assert "constant answer (chance)" not in all_text(at)


def test_logs_show_the_runs_lines_by_level(open_page: OpenPage, dashboard: Dashboard) -> None:
    run_id = tap_run(dashboard)
    at = open_page(RUN, run=str(run_id))
    log = texts(at, "code")[-1]
    assert "[worker] queued -> running: taken by test-worker" in log
    assert "[engine] round 1/2: clients" in log
    assert "[api] the run queue is unreachable" in log
    at.segmented_control(key=f"log_level_{run_id}").set_value("WARNING").run()
    log = texts(at, "code")[-1]
    assert "taken by test-worker" not in log
    assert "[api] the run queue is unreachable" in log
    assert dashboard.asked(f"/runs/{run_id}/logs", level="WARNING")


def test_a_thirty_client_run_draws_a_page_of_clients_filtered_by_the_api(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    run_id = dashboard.runs.large_run
    at = open_page(RUN, run=str(run_id))
    assert not at.exception
    titles = sorted(metric_figures(at))
    # clients 0-8, every third with a second (generation) task
    assert len(titles) == 9 + 3
    assert {int(t.split()[1]) for t in titles} == set(range(9))
    assert sorted(loss_figures(at)) == sorted(f"Client {c}" for c in range(9))
    path = f"/runs/{run_id}/metrics"
    assert dashboard.asked(path, client="8", metric="accuracy")
    assert dashboard.asked(f"/runs/{run_id}/losses", client="8")
    # The facets came from the first evaluation round and stage 2, not the whole run.
    assert dashboard.asked(path, round_max="1")
    assert not any(set(query) <= {"limit", "offset"} for query in dashboard.queries(path))

    at.segmented_control(key=f"client_page_{run_id}_30").set_value(3).run()
    assert {int(t.split()[1]) for t in metric_figures(at)} == set(range(27, 30))


# -- submit: hyperparameters and sweeps -----------------------------------------------------------


def test_sweep_preview_counts_algorithms_times_seeds(open_page: OpenPage) -> None:
    at = open_page(SUBMIT)
    assert "**1 run** will be queued" in texts(at, "info")[0]
    at.multiselect[0].set_value(["tap", "fedavg"])
    at.text_input[1].input("41, 42, 43").run()
    assert texts(at, "info")[0].startswith("**6 runs** will be queued: tap, fedavg for seeds")


def test_hyperparameter_errors_land_under_their_fields(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    before = experiments_total(dashboard)
    at = open_page(SUBMIT)
    at.number_input(key="submit_clients_per_round").set_value(10)
    at.number_input(key="submit_kd_lambda").set_value(-1.0)
    submit(at)
    assert "greater than or equal to 0" in column_with(at, "λ (distillation weight)").error[0].value
    assert not column_with(at, "Rounds").error
    # The API checks the whole config once every field is valid: the demo has 7 clients.
    at.number_input(key="submit_kd_lambda").set_value(0.01)
    submit(at)
    assert "exceeds the scenario's 7 clients" in column_with(at, "Clients per round").error[0].value
    assert not column_with(at, "λ (distillation weight)").error
    assert experiments_total(dashboard) == before  # nothing was created


def test_a_sweep_over_algorithms_and_seeds_sends_every_hyperparameter(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    at = open_page(SUBMIT)
    at.text_input[0].input("every hyperparameter")
    at.multiselect[0].set_value(["tap", "local"])
    at.text_input[1].input("1 2")
    for key, value in (
        ("rounds", 2),
        ("clients_per_round", 3),
        ("local_steps", 2),
        ("post_iterations", 1),
        ("eval_every", 1),
    ):
        at.number_input(key=f"submit_{key}").set_value(value)
    at.number_input(key="submit_kd_lambda").set_value(0.01)
    at.number_input(key="submit_margin_image_classification").set_value(0.02)
    submit(at)
    assert not at.error
    experiment_id = re.search(r"Experiment #(\d+)", texts(at, "success")[0])[1]  # type: ignore[index]
    runs = dashboard.api.call("GET", f"/experiments/{experiment_id}")["runs"]
    assert [(r["algorithm"], r["seed"]) for r in runs] == [
        ("tap", 1),
        ("tap", 2),
        ("local", 1),
        ("local", 2),
    ]
    config = dashboard.api.call("GET", f"/runs/{runs[0]['id']}")["config"]
    assert config["rounds"] == 2 and config["local_steps"] == 2 and config["eval_every"] == 1
    assert config["clients_per_round"] == 3 and config["post_iterations"] == 1
    assert config["kd_lambda"] == 0.01
    assert config["margins"]["image_classification"] == 0.02
