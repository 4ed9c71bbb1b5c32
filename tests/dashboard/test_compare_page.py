"""The Compare page via AppTest against the fake API's ``GET /compare``."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from streamlit.testing.v1 import AppTest

from tests.dashboard.fake_tapfl_api import CLASSIFY, GENERATE, PANELS, FakeApi, sweep_state
from tests.dashboard.test_pages import all_text, asked, texts

OpenPage = Callable[..., AppTest]
COMPARE = "app_pages/compare.py"


def figures(at: AppTest) -> list[dict[str, Any]]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def table(at: AppTest, column: str) -> Any:
    """The table that has ``column``."""
    return next(frame.value for frame in at.dataframe if column in frame.value.columns)


def open_sweep(open_page: OpenPage, fake_api: FakeApi) -> AppTest:
    fake_api.reset(sweep_state())
    return open_page(COMPARE)


def test_summary_says_tap_beat_fedavg_and_local_on_every_client_and_task(
    open_page: OpenPage, fake_api: FakeApi
) -> None:
    at = open_sweep(open_page, fake_api)
    assert "TAP beat fedavg and local on **4 of 4** client-task pairs" in all_text(at)
    summary = table(at, "TAP beat all")
    assert sorted(zip(summary["client"], summary["task"], strict=True)) == sorted(PANELS)
    assert set(summary["TAP beat all"]) == {"yes"}
    assert all(v.startswith("better") for v in summary["vs fedavg"])
    # Classification is judged on accuracy, generation on mse (lower is better).
    assert set(summary["metric"]) == {"accuracy", "mse"}
    # The sweep is the whole group, asked for by id, on the final (stage-2) models.
    assert asked(fake_api, "/compare", group="sweep-ablation", model="final", split="local")
    assert asked(fake_api, "/compare", group="sweep-ablation", model="final", split="pooled")
    assert at.query_params["group"] == "sweep-ablation"


def test_curves_overlay_each_algorithm_with_a_band_over_seeds(
    open_page: OpenPage, fake_api: FakeApi
) -> None:
    at = open_sweep(open_page, fake_api)
    curves = {f["layout"]["title"]["text"]: f for f in figures(at) if "title" in f["layout"]}
    assert sorted(curves) == sorted(f"Client {c} · {t}" for c, t in PANELS)
    traces = curves[f"Client 0 · {CLASSIFY}"]["data"]
    assert [t["name"] for t in traces if t.get("fill") != "toself"] == ["tap", "fedavg", "local"]
    assert len([t for t in traces if t.get("fill") == "toself"]) == 3  # a band per group
    assert asked(fake_api, "/compare", model="personal", split="local", metric="accuracy")


def test_final_values_mark_the_best_group(open_page: OpenPage, fake_api: FakeApi) -> None:
    at = open_sweep(open_page, fake_api)
    finals = table(at, "best")
    assert list(finals.columns) == ["client", "task", "metric", "tap", "fedavg", "local", "best"]
    assert set(finals["best"]) == {"tap"}
    row = finals[(finals["client"] == 1) & (finals["task"] == GENERATE)].iloc[0]
    assert row["tap"].startswith("★ ") and " ± " in row["tap"]  # three seeds: a std
    assert not row["fedavg"].startswith("★")


def test_scatter_puts_personalization_against_generalization(
    open_page: OpenPage, fake_api: FakeApi
) -> None:
    at = open_sweep(open_page, fake_api)
    scatters = [f for f in figures(at) if "personalization" in str(f["layout"]["yaxis"]["title"])]
    assert len(scatters) == 2  # accuracy and mse
    names = [t["name"] for t in scatters[0]["data"]]
    assert names == ["tap", "fedavg", "local"]
    assert len(scatters[0]["data"][0]["text"]) == 2  # two classification panels


def test_picked_runs_from_the_url_are_compared_by_id(
    open_page: OpenPage, fake_api: FakeApi
) -> None:
    fake_api.reset(sweep_state())
    at = open_page(COMPARE, runs="1,4,10")
    assert not at.exception
    assert at.segmented_control(key="compare_source").value == "Runs"
    assert asked(fake_api, "/compare", runs="1,4,10")
    assert "3 runs in 2 groups: tap, fedavg" in texts(at, "caption")
    # Without local runs the summary weighs TAP against FedAvg only.
    assert "TAP beat fedavg on" in all_text(at)


def test_summary_needs_a_baseline(open_page: OpenPage, fake_api: FakeApi) -> None:
    fake_api.reset(sweep_state())
    at = open_page(COMPARE, runs="1,2")
    assert "needs a TAP group and a FedAvg or local group" in all_text(at)
    assert not at.exception


def test_an_api_without_compare_says_so(open_page: OpenPage, fake_api: FakeApi) -> None:
    fake_api.reset(sweep_state()).missing.add("compare")
    at = open_page(COMPARE)
    assert not at.exception
    assert any("no `GET /api/v1/compare` endpoint" in w for w in texts(at, "warning"))
    assert not at.get("plotly_chart")


def test_no_runs_yet(open_page: OpenPage, fake_api: FakeApi) -> None:
    from tests.dashboard.fake_tapfl_api import FakeState

    fake_api.reset(FakeState())
    at = open_page(COMPARE)
    assert "No runs yet" in all_text(at)


def test_the_run_page_links_to_the_comparison_of_its_sweep(
    open_page: OpenPage, fake_api: FakeApi
) -> None:
    fake_api.reset(sweep_state())
    at = open_page("app_pages/run.py", run="10")  # the lone run of experiment "single"
    link = next(x for x in at.get("page_link") if "Compare" in x.proto.label)
    assert link.proto.query_string == "group=group-2"
    at = open_page(COMPARE, group="group-2")  # not the default (the newest real sweep)
    assert at.selectbox(key="compare_group").value == "group-2"
    assert asked(fake_api, "/compare", group="group-2")
