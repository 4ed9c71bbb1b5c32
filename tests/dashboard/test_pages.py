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

from dashboard.vega import DASHES
from tests.dashboard import real_runs, static_charts, vega
from tests.dashboard.conftest import APP, Dashboard, unused_port

OpenPage = Callable[..., AppTest]
RUN = "app_pages/run.py"
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
    """Curve charts (Vega-Lite specs) by title ("Client 1 · task"); loss charts are
    plotly figures titled "Client 1"."""
    return {
        vega.title_of(s): s
        for s in vega.specs(at)
        if " · " in vega.title_of(s) and not vega.title_of(s).endswith(" · stage 2")
    }


def loss_figures(at: AppTest) -> dict[str, dict[str, Any]]:
    return {title_of(f): f for f in figures(at) if re.fullmatch(r"Client \d+", title_of(f))}


def open_section(at: AppTest, key: str) -> AppTest:
    """Open one of the page's expanders that build their content only when opened."""
    at.session_state[key] = True
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def array(values: Any) -> list[Any]:
    """A plotly JSON array: a list, or numpy data packed as ``{"dtype", "bdata"}``."""
    if isinstance(values, dict) and "bdata" in values:
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return list(values)


def curves_of(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Series name -> what its line draws (x, y, color, strokeDash) of every curve."""
    return vega.series(spec, "line")


def markers_of(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Series name -> what its markers draw (shape, size, fill), the replacements' too."""
    return vega.series(spec, "point")


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
            assert vega.axis_title(figure, "y") == MAIN_METRICS[task], title
    for title, figure in curves.items():
        for name, trace in curves_of(figure).items():
            if name.startswith("constant"):
                continue
            expected = DASHES["solid" if " · local" in name else "dash"]
            assert trace["strokeDash"] == expected, (title, name)
    models = {name.split(" · ")[0] for name in curves_of(curves[f"Client 2 · {CLASSIFY}"])}
    assert models == {"global", "personal", "global_ft", "final"}
    assert not loss_figures(at)  # built only once their expander is opened
    losses = rows(dashboard, f"/runs/{run_id}/losses")
    drawn = loss_figures(open_section(at, f"losses_{run_id}"))
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
    assert {vega.axis_title(f, "y") for f in curves.values()} == {"loss"}
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
    assert run_status(dashboard, run_id) == "running"  # it asks first
    at.button(key=f"cancel_{run_id}_confirm").click().run()
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
    assert not at.get("plotly_chart") and not vega.specs(at)
    assert not static_charts.drawings(at)  # nor the bought/cost chart
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
    assert "run 99999 not found" in " ".join(texts(at, "error"))


# -- connection ------------------------------------------------------------------------------------


@pytest.mark.usefixtures("dashboard")
def test_unreachable_api_shows_a_friendly_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPFL_API_URL", f"http://127.0.0.1:{unused_port()}")
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    assert not at.exception
    assert "Cannot reach the tapfl API" in texts(at, "error")[0]
    assert not at.dataframe  # the page itself did not run


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
        markers = [m["x"] for name, m in markers_of(figure).items() if name == "replacement"]
        assert markers == ([expected] if expected else []), title
    open_section(at, f"replacements_{run_id}")
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
    sizes = {name: t["size"] for name, t in markers_of(figure).items()}
    final = next(size for name, size in sizes.items() if name.startswith("final · local"))
    personal = next(size for name, size in sizes.items() if name.startswith("personal · local"))
    assert final > personal
    assert vega.texts(figure) == ["stage 2"]


def step_figures(at: AppTest) -> dict[str, dict[str, Any]]:
    return {title_of(f): f for f in figures(at) if title_of(f).endswith(" · stage 2")}


def test_stage_two_step_by_step_shows_teacher_student_and_kd_per_client(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    run_id = tap_run(dashboard)
    steps = rows(dashboard, f"/runs/{run_id}/steps")
    at = open_page(RUN, run=str(run_id))
    assert "Stage 2 step by step" in [e.label for e in at.expander]
    assert not step_figures(at)  # built once opened
    open_section(at, f"steps_{run_id}")
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
    # The section is offered for runs with a stage 2; opened, it says there are no steps.
    has_post = bool(rows(dashboard, f"/runs/{run_id}/metrics", stage="post"))
    assert ("Stage 2 step by step" in [e.label for e in at.expander]) == has_post
    if has_post:
        open_section(at, f"steps_{run_id}")
        assert dashboard.asked(f"/runs/{run_id}/steps")  # asked, and there were none
        assert "This run reports no stage-2 optimizer steps." in texts(at, "caption")
    assert not step_figures(at)
    assert loss_figures(open_section(at, f"losses_{run_id}"))  # the page around it is whole


def test_the_constant_answer_is_a_grey_dotted_chance_line_named_in_the_legend(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    run_id = tap_run(dashboard)
    at = open_page(RUN, run=str(run_id))
    figure = metric_figures(at)[f"Client 4 · {VQA}"]  # text answers: chrF beside chance
    lines = curves_of(figure)
    chance = "constant answer (chance)"
    local = [line for name, line in lines.items() if name.startswith(f"{chance} · local")]
    pooled = [line for name, line in lines.items() if name.startswith(f"{chance} · pooled")]
    assert local and pooled
    assert {str(line["strokeDash"]) for line in local} == {str(DASHES["dot"])}
    assert str(DASHES["dot"]) not in {str(line["strokeDash"]) for line in pooled}
    others = {line["color"] for name, line in lines.items() if not name.startswith("constant")}
    assert local[0]["color"] not in others
    legend = next(s for s in vega.specs(at) if chance in vega.scale_colors(s))
    assert vega.scale_colors(legend)[chance] == local[0]["color"]  # named in the legend
    assert "most frequent training answer" in all_text(at)

    at.selectbox(key=f"metric_{run_id}").set_value("accuracy").run()  # no text task reports it
    assert not at.exception
    assert "constant answer (chance)" not in all_text(at)


def test_logs_show_the_runs_lines_by_level(open_page: OpenPage, dashboard: Dashboard) -> None:
    run_id = tap_run(dashboard)
    at = open_page(RUN, run=str(run_id))
    assert not dashboard.asked(f"/runs/{run_id}/logs")  # built only once opened
    log = texts(open_section(at, f"logs_{run_id}"), "code")[-1]
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
    assert sorted(loss_figures(open_section(at, f"losses_{run_id}"))) == sorted(
        f"Client {c}" for c in range(9)
    )
    path = f"/runs/{run_id}/metrics"
    assert dashboard.asked(path, client="8", metric="accuracy")
    assert dashboard.asked(f"/runs/{run_id}/losses", client="8")
    # The facets came from the first evaluation round and stage 2, not the whole run.
    assert dashboard.asked(path, round_max="1")
    assert not any(set(query) <= {"limit", "offset"} for query in dashboard.queries(path))

    at.segmented_control(key=f"client_page_{run_id}_30").set_value(3).run()
    assert {int(t.split()[1]) for t in metric_figures(at)} == set(range(27, 30))
