"""The Run page's answer to the question of the project, against the real API and a real
TAP run: what personalization bought (on the client's own test data) and what it cost (on
the pooled test data) per client and task, colours per model kind, one x-range for every
panel, details built only when asked for, and links that name no run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from tests.dashboard import markdown, static_charts, vega
from tests.dashboard.conftest import Dashboard
from tests.dashboard.test_pages import (
    RUN,
    array,
    curves_of,
    figures,
    loss_figures,
    metric_figures,
    open_section,
    rows,
    tap_run,
    texts,
    title_of,
)

OpenPage = Callable[..., AppTest]
LOWER_IS_BETTER = {"mse", "loss", "perplexity"}
STAGES = ("fl", "post")


def main_metric(task: str) -> str:
    """What the catalog judges a task by, by the task's family (the demo's task names)."""
    if task.endswith("classification"):
        return "accuracy"
    if task.endswith("generation"):
        return "mse"
    return "chrf"  # shapes_vqa: text generation


def expected_gains(metrics: list[dict[str, Any]]) -> dict[tuple[int, str, str], float]:
    """(client, task, "<model> bought|cost") -> the difference to the global model of the
    last values, turned so that positive is better, computed from the API's rows."""
    last: dict[tuple[int, str, str, str], tuple[tuple[int, int], float]] = {}
    for row in metrics:
        if row["metric"] != main_metric(row["task"]):
            continue
        key = (row["client"], row["task"], row["model"], row["split"])
        when = (STAGES.index(row["stage"]), row["round"])
        if key not in last or when >= last[key][0]:
            last[key] = (when, row["value"])
    found = {}
    for (client, task, model, split), (_, value) in last.items():
        reference = last.get((client, task, "global", split))
        if model not in ("personal", "final") or reference is None:
            continue
        sign = -1.0 if main_metric(task) in LOWER_IS_BETTER else 1.0
        what = "bought" if split == "local" else "cost"
        found[(client, task, f"{model} {what}")] = sign * (value - reference[1])
    return found


def gains_table(at: AppTest) -> Any:
    """The table under the bought/cost chart: the page's first (static, Markdown) table."""
    return markdown.tables(at)[0]


def gains_drawing(at: AppTest) -> str:
    """The bought/cost chart, drawn on the server: its SVG."""
    return static_charts.drawings(at)["gains"]


def test_bought_and_cost_are_the_last_values_minus_global_with_lower_is_better_flipped(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    run_id = tap_run(dashboard)
    expected = expected_gains(rows(dashboard, f"/runs/{run_id}/metrics"))
    at = open_page(RUN, run=str(run_id))
    table = gains_table(at)
    shown = {}
    for record in table.to_dict("records"):
        for column in ("personal bought", "personal cost", "final bought", "final cost"):
            if column in record and record[column] == record[column]:  # not NaN
                shown[(record["client"], record["task"], column)] = record[column]
    assert shown.keys() == expected.keys()
    for key, value in expected.items():
        assert shown[key] == pytest.approx(value, abs=1e-4), key
    # mse (image generation) is lower-is-better: marked, and flipped above.
    flipped = table[table["task"].str.endswith("image_generation")]
    assert not flipped.empty and set(flipped["metric"]) == {"mse ↓ (flipped)"}
    assert "lower is better" in " ".join(texts(at, "markdown"))
    # The chart: bought and cost panels for each main metric, mse's said to be flipped,
    # a bar row per client and task.
    drawn = static_charts.texts(gains_drawing(at))
    metrics = ["accuracy", "chrf", "mse (lower is better: flipped)"]
    assert sorted(t for t in drawn if t in metrics) == sorted(2 * metrics)
    for client, task, _ in expected:
        assert f"client {client} · {task}" in drawn


def test_every_model_kind_has_a_colour_of_its_own(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    run_id = tap_run(dashboard)
    at = open_page(RUN, run=str(run_id))
    colours: dict[str, set[str]] = {}
    for figure in metric_figures(at).values():
        for name, trace in curves_of(figure).items():
            colours.setdefault(name.split(" · ")[0], set()).add(trace["color"])
    assert {"global", "global_ft", "personal", "final"} <= colours.keys()
    assert all(len(found) == 1 for found in colours.values()), colours  # one per kind
    assert len({next(iter(found)) for found in colours.values()}) == len(colours)
    # The legend and the bought/cost chart use the same colours.
    legend = next(vega.scale_colors(s) for s in vega.specs(at) if "global" in vega.scale_colors(s))
    for model in ("global", "global_ft", "personal", "final"):
        assert legend[model] == next(iter(colours[model]))
    bars = static_charts.mark_fills(gains_drawing(at), "rect")
    assert bars == {next(iter(colours["personal"])), next(iter(colours["final"]))}


def test_every_panel_of_a_grid_shows_the_same_rounds(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    run_id = tap_run(dashboard)
    metrics = rows(dashboard, f"/runs/{run_id}/metrics")
    rounds = [row["round"] for row in metrics]
    at = open_page(RUN, run=str(run_id))
    ranges = {vega.x_domain(f) for f in metric_figures(at).values()}
    assert ranges == {(min(rounds) - 0.5, max(rounds) + 0.5)}
    losses = loss_figures(open_section(at, f"losses_{run_id}"))
    assert len(losses) > 1
    assert len({tuple(f["layout"]["xaxis"]["range"]) for f in losses.values()}) == 1


def test_losses_and_stage_two_steps_are_fetched_only_once_opened(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    run_id = tap_run(dashboard)
    at = open_page(RUN, run=str(run_id))
    labels = [e.label for e in at.expander]
    assert {"Local training loss", "Stage 2 step by step"} <= set(labels)
    assert not dashboard.asked(f"/runs/{run_id}/losses")
    assert not dashboard.asked(f"/runs/{run_id}/steps")
    open_section(at, f"steps_{run_id}")
    assert dashboard.asked(f"/runs/{run_id}/steps")


def test_last_values_table_has_a_row_per_split_and_the_differences_to_global(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    run_id = tap_run(dashboard)
    at = open_page(RUN, run=str(run_id))
    table = markdown.tables(at)[1]
    assert {"split", "global", "personal", "final", "personal-global", "final-global"} <= set(
        table.columns
    )
    assert set(table["split"]) == {"local", "pooled"}
    gap = (table["personal-global"] - (table["personal"] - table["global"])).abs().dropna()
    assert len(gap) == len(table) and (gap <= 2e-4).all()  # shown to four decimals


@pytest.mark.parametrize(
    ("link", "message"),
    [
        ("abc", "`run=abc` is not a run id"),
        ("-3", "`run=-3` is not a run id"),
        ("999999", "There is no run #999999"),
    ],
)
def test_a_link_that_names_no_run_says_so_instead_of_showing_another(
    open_page: OpenPage, link: str, message: str
) -> None:
    at = open_page(RUN, run=link)
    errors = texts(at, "error")
    assert len(errors) == 1 and message in errors[0]
    assert not any(title.startswith("Run #") for title in texts(at, "title"))
    assert not at.get("plotly_chart") and not vega.specs(at) and not at.selectbox
    assert not static_charts.drawings(at)


def test_communication_charts_the_cumulative_mb_of_the_runs_traffic_once_opened(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    run_id = tap_run(dashboard)
    at = open_page(RUN, run=str(run_id))
    assert "Communication" in [e.label for e in at.expander]
    assert not dashboard.asked(f"/runs/{run_id}/traffic")
    open_section(at, f"traffic_{run_id}")
    [figure] = [f for f in figures(at) if title_of(f) == "Communication"]
    sent = rows(dashboard, f"/runs/{run_id}/traffic")
    assert sent  # a real FedAvg/TAP run sends every round
    for trace in figure["data"]:
        direction = trace["name"].split()[0]
        per_round: dict[int, int] = {}
        for row in sent:
            if row["direction"] == direction:
                per_round[row["round"]] = per_round.get(row["round"], 0) + row["bytes"]
        total, expected = 0, []
        for round_no in sorted(per_round):
            total += per_round[round_no]
            expected.append(total / 1e6)
        assert array(trace["x"]) == sorted(per_round)
        assert array(trace["y"]) == pytest.approx(expected)
    assert sorted(t["name"].split()[0] for t in figure["data"]) == ["down", "up"]


def test_a_run_without_traffic_says_so_and_fetches_no_metrics_for_it(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    run_id = dashboard.runs.large_run  # its events hold no traffic
    at = open_page(RUN, run=str(run_id))
    before = len(dashboard.queries(f"/runs/{run_id}/metrics"))
    open_section(at, f"traffic_{run_id}")
    assert dashboard.asked(f"/runs/{run_id}/traffic")
    assert any("Nothing sent" in c.value for c in at.caption)
    # Opening the section reads the traffic, not the metrics again (the page's own reads
    # on this rerun come from the cache).
    assert len(dashboard.queries(f"/runs/{run_id}/metrics")) == before


def test_the_run_page_says_on_how_many_examples_rounds_before_the_last_were_evaluated(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    run_id = tap_run(dashboard)
    cap = dashboard.api.call("GET", f"/runs/{run_id}")["config"]["eval_max_samples"]
    at = open_page(RUN, run=str(run_id))
    notice = f"Rounds before the last were evaluated on {cap} random examples per set"
    assert cap and any(notice in text for text in texts(at, "caption"))
