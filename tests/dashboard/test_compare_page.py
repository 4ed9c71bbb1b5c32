"""The Compare page via AppTest against the real API's ``GET /compare``, on the session's
sweep of real engine runs (TAP and FedAvg, two seeds each)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboard import markdown, static_charts, vega
from tests.dashboard.conftest import Dashboard, render
from tests.dashboard.test_pages import (
    GENERATE,
    all_text,
    panels_of,
    rows,
    texts,
)

OpenPage = Callable[..., AppTest]


def curve_specs(at: AppTest) -> dict[str, dict[str, Any]]:
    """The curves' small multiples (Vega-Lite specs) by title ("Client 0 · task")."""
    return {vega.title_of(s): s for s in vega.specs(at) if vega.title_of(s).startswith("Client ")}


COMPARE = "app_pages/compare.py"
# Each task is judged on its main metric: accuracy, mse for images, chrF for text answers.
MAIN_METRICS = {"accuracy", "mse", "chrf"}


def table_text(at: AppTest, column: str) -> str:
    """The Markdown of the (static) table that has ``column``."""
    for element in at.markdown:
        if element.value.lstrip().startswith("|") and column in markdown.read(element.value):
            return str(element.value)
    raise AssertionError(f"no table with a column {column!r}")


def table(at: AppTest, column: str) -> Any:
    """The table that has ``column``, as a frame."""
    return markdown.read(table_text(at, column))


def compare_warnings(at: AppTest) -> list[str]:
    """The page's warnings about the comparison (not the sidebar's)."""
    return [w.value for w in at.warning if w.icon == ":material/warning:"]


def sweep_panels(dashboard: Dashboard) -> list[tuple[int, str]]:
    metrics = rows(dashboard, f"/runs/{dashboard.runs.sweep.tap[0]}/metrics", stage="fl")
    return sorted({(row["client"], row["task"]) for row in metrics})


def open_sweep(open_page: OpenPage, dashboard: Dashboard, interactive: bool = False) -> AppTest:
    """The sweep's Compare page; ``interactive``: with the charts the browser draws (their
    Vega-Lite specs readable here), not the drawings the server makes by default."""
    at = open_page(COMPARE, group=dashboard.runs.sweep.group_id)
    if interactive:
        at.toggle(key="compare_interactive").set_value(True).run()
        assert not at.exception
    return at


def test_the_verdict_weighs_tap_against_fedavg_on_every_client_and_task(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    group = dashboard.runs.sweep.group_id
    at = open_sweep(open_page, dashboard)
    panels = sweep_panels(dashboard)
    assert at.selectbox(key="compare_ours").value == "tap"
    verdict = table(at, "95% CI (tie band)")
    for on in ("personalization", "generalization"):
        rows_on = verdict[verdict["on"] == on]
        assert sorted(zip(rows_on["client"], rows_on["task"], strict=True)) == panels
    assert "vs" not in verdict  # a table per rival, under its name
    assert set(verdict["result"]) <= {"win", "tie", "loss"}  # two seeds each: a verdict
    colour = {"win": "green", "loss": "red", "tie": None}
    shown = markdown.colours(table_text(at, "95% CI (tie band)"), "result")
    assert shown == [colour[result] for result in verdict["result"]]
    summary = table(at, "wins")  # the counts the headline is made of
    assert set(summary["on"]) == {"personalization", "generalization"}
    assert (summary["pairs"] == len(panels)).all()
    assert set(verdict["metric"]) == MAIN_METRICS  # one metric per task, never a loss
    text = all_text(at)
    assert "**tap** vs **fedavg**, per client and task" in text
    n = len(panels)
    for on in ("personalization", "generalization"):
        assert re.search(
            rf"{on}: \d+ wins?, \d+ ties?, \d+ loss(es)? of {n} client-task pairs", text
        )
    # The sweep is the whole group, asked for by id, on the final (stage-2) models.
    assert dashboard.asked("/compare", group=group, model="final", split="local")
    assert dashboard.asked("/compare", group=group, model="final", split="pooled")
    assert at.query_params["group"] == group
    assert not compare_warnings(at)  # same config but the algorithm and seed, two seeds each


def test_curves_overlay_each_algorithm_with_a_band_over_seeds(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    at = open_sweep(open_page, dashboard, interactive=True)
    at.selectbox(key="compare_curve_model").set_value("global").run()  # both have one
    assert not at.exception
    curves = curve_specs(at)
    expected = panels_of([{"client": c, "task": t} for c, t in sweep_panels(dashboard)])
    assert sorted(curves) == expected
    spec = curves["Client 0 · digits_image_classification"]
    assert list(vega.series(spec, "line", key="label")) == ["tap", "fedavg"]
    assert list(vega.series(spec, "area", key="label")) == ["tap", "fedavg"]  # a band each
    # one x-range for every panel, a legend above the grid in the curves' colours
    assert len({vega.x_domain(s) for s in curves.values()}) == 1
    legend = next(s for s in vega.specs(at) if s.get("height") == 1)  # a legend-only chart
    assert vega.scale_colors(legend) == vega.scale_colors(spec)
    assert dashboard.asked("/compare", model="global", split="local", metric="accuracy")


def test_curves_show_the_personal_models_by_default(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    at = open_sweep(open_page, dashboard, interactive=True)
    assert at.selectbox(key="compare_curve_model").value == "personal"
    curves = curve_specs(at)
    expected = panels_of([{"client": c, "task": t} for c, t in sweep_panels(dashboard)])
    assert sorted(curves) == expected
    assert dashboard.asked("/compare", model="personal", split="local", metric="accuracy")


def test_by_default_every_chart_is_drawn_on_the_server_and_the_toggle_draws_the_same_specs(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    at = open_sweep(open_page, dashboard)
    drawn = static_charts.drawings(at)
    assert not vega.specs(at)  # nothing for the browser to load Vega for
    panels = panels_of([{"client": c, "task": t} for c, t in sweep_panels(dashboard)])
    curves = [key for key in drawn if key.startswith("compare_curve_")]
    assert curves == [f"compare_curve_{n}" for n in range(len(panels))]
    titles = [static_charts.texts(drawn[key]) for key in curves]
    assert all(title in texts for title, texts in zip(sorted(panels), titles, strict=True))
    assert "tap" in static_charts.texts(drawn["compare_legend"])  # fedavg has no personal model
    scatters = [key for key in drawn if key.startswith("compare_tradeoff_")]
    assert len(scatters) == len(MAIN_METRICS)
    # The same charts, drawn by the browser once asked for: one spec per drawing.
    at.toggle(key="compare_interactive").set_value(True).run()
    assert not static_charts.drawings(at)
    assert sorted(curve_specs(at)) == sorted(panels)
    assert len(vega.specs(at)) == len(drawn)


def test_final_values_mark_the_best_group(open_page: OpenPage, dashboard: Dashboard) -> None:
    at = open_sweep(open_page, dashboard)
    finals = table(at, "best")
    assert list(finals.columns) == ["client", "task", "metric", "tap", "fedavg", "best"]
    assert set(finals["best"]) <= {"tap", "fedavg"}
    row = finals[(finals["client"] == 2) & (finals["task"] == GENERATE)].iloc[0]
    best, other = row["best"], "fedavg" if row["best"] == "tap" else "tap"
    assert row[best].startswith("★ ") and " ± " in row[best]  # two seeds: a std
    assert not row[other].startswith("★")


def test_scatter_puts_personalization_against_generalization(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    at = open_sweep(open_page, dashboard, interactive=True)
    scatters = [s for s in vega.specs(at) if "personalization" in str(vega.axis_title(s, "y"))]
    assert len(scatters) == len(MAIN_METRICS)  # one per metric
    points = vega.drawn(scatters[0], "point")
    assert list(dict.fromkeys(p["color"] for p in points)) == ["tap", "fedavg"]
    accuracy_panels = [
        (client, task) for client, task in sweep_panels(dashboard) if "classification" in task
    ]
    assert len([p for p in points if p["color"] == "tap"]) == len(accuracy_panels)


def test_picked_runs_from_the_url_are_compared_by_id(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    sweep = dashboard.runs.sweep
    picked = ",".join(map(str, [*sweep.tap, sweep.fedavg[0]]))
    at = open_page(COMPARE, runs=picked)
    assert not at.exception
    assert at.segmented_control(key="compare_source").value == "Runs"
    assert dashboard.asked("/compare", runs=picked)
    assert "3 runs in 2 groups: tap, fedavg" in texts(at, "caption")
    assert "**tap** vs **fedavg**" in all_text(at)
    # fedavg has one seed here: no verdict, said at the top and in the table
    assert any("`fedavg` has one seed" in w for w in compare_warnings(at))
    assert set(table(at, "95% CI (tie band)")["result"]) == {"one seed: no verdict"}


def test_the_verdict_needs_two_groups(open_page: OpenPage, dashboard: Dashboard) -> None:
    at = open_page(COMPARE, runs=",".join(map(str, dashboard.runs.sweep.tap)))
    assert "The verdict needs two groups or more" in all_text(at)
    assert not at.exception


def test_unfinished_runs_are_left_out_and_listed(open_page: OpenPage, dashboard: Dashboard) -> None:
    sweep, states = dashboard.runs.sweep, dashboard.runs.states
    at = open_page(
        COMPARE, runs=f"{sweep.tap[0]},{sweep.fedavg[0]},{states.failed},{states.running}"
    )
    [left_out] = [w for w in compare_warnings(at) if "Left out" in w]
    assert f"#{states.running} (running)" in left_out and f"#{states.failed} (failed)" in left_out
    assert "2 runs in 2 groups: tap, fedavg" in texts(at, "caption")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"group": "bogus"}, "No sweep `bogus`"),
        ({"runs": "abc"}, "`abc` is not a run id"),
        ({"runs": "9223372036854775808"}, "larger than any run id"),
    ],
)
def test_a_bad_link_says_what_is_wrong(
    open_page: OpenPage, dashboard: Dashboard, query: dict[str, str], message: str
) -> None:
    at = open_page(COMPARE, **query)
    [error] = at.error
    assert "This link cannot be compared" in error.value and message in error.value
    assert not markdown.tables(at) and not vega.specs(at)  # nothing compared in its place


def test_a_link_to_a_missing_run_names_it(open_page: OpenPage, dashboard: Dashboard) -> None:
    at = open_page(COMPARE, runs=f"{dashboard.runs.sweep.tap[0]},999999")
    [error] = at.error
    assert "No run #999999" in error.value


@pytest.mark.usefixtures("empty_dashboard")
def test_no_runs_yet() -> None:
    at = render(COMPARE)
    assert "No runs yet" in all_text(at)


def test_the_run_page_links_to_the_comparison_of_its_sweep(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    lone = dashboard.runs.large_run  # the only run of its experiment
    group = dashboard.api.call("GET", f"/runs/{lone}")["group_id"]
    at = open_page("app_pages/run.py", run=str(lone))
    link = next(x for x in at.get("page_link") if "Compare" in x.proto.label)
    assert link.proto.query_string == f"group={group}"
    at = open_page(COMPARE, group=group)  # not the default (a sweep of several runs)
    assert at.selectbox(key="compare_group").value == group
    assert dashboard.asked("/compare", group=group)


def test_communication_cost_sets_each_groups_metric_against_the_mb_it_sent(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    at = open_sweep(open_page, dashboard, interactive=True)
    at.selectbox(key="compare_curve_model").set_value("global").run()  # both have one
    assert not dashboard.asked("/traffic")
    metric_reads = len(dashboard.queries("/metrics")) + len(dashboard.queries("/compare"))
    at.session_state["compare_traffic"] = True
    at.run()
    assert not at.exception
    costs = {
        vega.title_of(s): s
        for s in vega.specs(at)
        if vega.title_of(s).endswith(" vs communication")
    }
    assert sorted(costs) == sorted(f"{m} vs communication" for m in MAIN_METRICS)
    traces = vega.series(costs["accuracy vs communication"], "line", key="label")
    assert sorted(traces) == ["fedavg", "tap"]
    sweep = dashboard.runs.sweep
    for label, ids in (("tap", sweep.tap), ("fedavg", sweep.fedavg)):
        totals = []
        for run_id in ids:
            sent = rows(dashboard, f"/runs/{run_id}/traffic")
            totals.append(sum(r["bytes"] for r in sent) / 1e6)
            assert dashboard.asked(f"/runs/{run_id}/traffic")
        # The last FL round's point stands at everything the group's runs sent, on average.
        assert max(traces[label]["x"]) == pytest.approx(sum(totals) / len(totals))
    # TAP sends what FedAvg sends: the same sub-models, the same rounds.
    assert traces["tap"]["x"] == pytest.approx(traces["fedavg"]["x"])
    # The section reads traffic only: the curves it plots were fetched already.
    assert len(dashboard.queries("/metrics")) + len(dashboard.queries("/compare")) == metric_reads
