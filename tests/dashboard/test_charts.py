"""Figures: one visual language (colour = model, solid = local, dashed = pooled)."""

from __future__ import annotations

import pandas as pd

from dashboard import charts
from tests.dashboard.fake_tapfl_api import CLASSIFY, PANELS, canned_losses, canned_metrics


def metrics_frame() -> pd.DataFrame:
    return pd.DataFrame(canned_metrics())


def test_panels_are_every_client_task_pair_in_reading_order() -> None:
    assert charts.panels(metrics_frame()) == sorted(PANELS)
    assert charts.panels(metrics_frame().iloc[0:0]) == []


def test_metric_figure_draws_a_line_per_model_and_split() -> None:
    frame = metrics_frame()
    one = frame[(frame.client == 0) & (frame.task == CLASSIFY) & (frame.metric == "accuracy")]
    figure = charts.metric_figure(one, metric="accuracy", title="Client 0")
    lines = {trace.name: trace for trace in figure.data}
    assert list(lines) == [
        "global · local",
        "global · pooled",
        "personal · local",
        "personal · pooled",
        "final · local",
        "final · pooled",
    ]
    assert {lines[n].line.dash for n in lines if n.endswith("local")} == {"solid"}
    assert {lines[n].line.dash for n in lines if n.endswith("pooled")} == {"dash"}
    assert lines["global · local"].line.color == lines["global · pooled"].line.color
    assert lines["global · local"].line.color != lines["personal · local"].line.color
    assert lines["personal · local"].marker.symbol == "circle"
    assert lines["personal · pooled"].marker.symbol == "circle-open"
    assert lines["final · pooled"].marker.symbol == "diamond-open"  # post stage
    assert list(lines["personal · local"].x) == [0, 2, 4]
    assert figure.layout.yaxis.title.text == "accuracy"


def test_stages_are_named_once_some_line_spans_two() -> None:
    frame = metrics_frame()
    one = frame[(frame.client == 0) & (frame.task == CLASSIFY) & (frame.metric == "accuracy")]
    extra = one[one.model == "personal"].assign(stage="post", round=6)
    figure = charts.metric_figure(pd.concat([one, extra]), metric="accuracy", title="")
    names = [trace.name for trace in figure.data]
    assert "personal · local · fl" in names
    assert "personal · local · post" in names
    assert "final · local · post" in names


def test_loss_figure_has_a_line_per_model_and_task() -> None:
    frame = pd.DataFrame(canned_losses())
    figure = charts.loss_figure(frame[frame.client == 1], title="Client 1")
    assert len(figure.data) == 4  # global/personal x two tasks
    assert {trace.line.dash for trace in figure.data} == {"solid", "dot"}


def test_latest_values_takes_the_last_round_of_each_line() -> None:
    frame = metrics_frame()
    frame = frame[frame.metric.isin(["accuracy", "mse"])]
    table = charts.latest_values(frame)
    assert len(table) == len(PANELS)
    row = table[(table.client == 0) & (table.metric == "accuracy")].iloc[0]
    last = frame[
        (frame.client == 0)
        & (frame.metric == "accuracy")
        & (frame.model == "personal")
        & (frame.split == "local")
    ]
    assert row["personal · local"] == last.sort_values("round")["value"].iloc[-1]
    assert list(table.columns[3:5]) == ["global · local", "global · pooled"]
