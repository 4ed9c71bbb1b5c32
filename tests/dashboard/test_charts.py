"""Figures: one visual language (colour = model, solid = local, dashed = pooled)."""

from __future__ import annotations

import pandas as pd

from dashboard import charts
from tests.dashboard.canned_rows import (
    CLASSIFY,
    GENERATE,
    PANELS,
    canned_losses,
    canned_metrics,
    canned_steps,
)


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


def with_constant(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame plus the chance level of each line of the global model."""
    chance = frame[frame.model == "global"].assign(model="constant", value=0.1)
    return pd.concat([frame, chance], ignore_index=True)


def test_the_constant_answer_is_a_grey_dotted_line_named_as_chance() -> None:
    frame = with_constant(metrics_frame())
    one = frame[(frame.client == 0) & (frame.task == CLASSIFY) & (frame.metric == "accuracy")]
    lines = {t.name: t for t in charts.metric_figure(one, metric="accuracy", title="").data}
    chance = "constant answer (chance)"
    # Last of the FL models; stage 2's final model comes after the FL rounds.
    assert list(lines)[2:6] == [
        "personal · local",
        "personal · pooled",
        f"{chance} · local",
        f"{chance} · pooled",
    ]
    local, pooled = lines[f"{chance} · local"], lines[f"{chance} · pooled"]
    assert (local.line.dash, pooled.line.dash) == ("dot", "dashdot")
    others = {t.line.color for name, t in lines.items() if not name.startswith(chance)}
    assert local.line.color == pooled.line.color not in others
    assert pooled.marker.symbol == "circle-open"  # the split still reads from the markers


def test_latest_values_put_the_constant_answer_last() -> None:
    frame = with_constant(metrics_frame())
    table = charts.latest_values(frame[frame.metric == "accuracy"])
    assert list(table.columns[-2:]) == [
        "constant answer (chance) · local",
        "constant answer (chance) · pooled",
    ]
    assert list(table.columns[3:5]) == ["global · local", "global · pooled"]


def test_step_figure_draws_teacher_student_and_kd_per_task_on_a_log_axis() -> None:
    frame = pd.DataFrame(canned_steps(steps=3))
    figure = charts.step_figure(frame[frame.client == 1], title="Client 1 · stage 2")
    lines = {t.name: t for t in figure.data}
    assert list(lines) == [
        f"teacher · {CLASSIFY}",
        f"teacher · {GENERATE}",
        f"student · {CLASSIFY}",
        f"student · {GENERATE}",
        f"student λ·KD · {CLASSIFY}",
        f"student λ·KD · {GENERATE}",
    ]
    assert figure.layout.yaxis.type == "log"
    assert figure.layout.xaxis.title.text == "optimizer step"
    teacher, student = lines[f"teacher · {CLASSIFY}"], lines[f"student · {CLASSIFY}"]
    kd = lines[f"student λ·KD · {CLASSIFY}"]
    assert teacher.line.color == charts.MODEL_COLORS["global_ft"]
    assert student.line.color == charts.MODEL_COLORS["final"]
    assert kd.line.color not in {teacher.line.color, student.line.color}
    assert kd.line.dash == student.line.dash != lines[f"student · {GENERATE}"].line.dash
    assert list(kd.x) == [1, 2, 3] and list(kd.customdata) == [4, 4, 4]


def test_a_term_of_the_whole_batch_and_a_second_fine_tuning_are_named_apart() -> None:
    rows = canned_steps(steps=2, client_tasks={0: [CLASSIFY]})
    batch = {**rows[-1], "term": "orthogonality", "task": "", "value": 0.05}
    again = [{**row, "round": 5} for row in rows if row["model"] == "final"]
    figure = charts.step_figure(pd.DataFrame([*rows, batch, *again]), title="")
    names = [t.name for t in figure.data]
    assert "student orthogonality · round 4" in names
    assert f"student · {CLASSIFY} · round 4" in names
    assert f"student · {CLASSIFY} · round 5" in names


def test_without_a_teacher_the_fine_tuned_model_keeps_its_own_name() -> None:
    # fedavg_ft fine-tunes the global model into "final": there is no student.
    rows = [r for r in canned_steps(steps=2, client_tasks={0: [CLASSIFY]}) if r["term"] == "task"]
    final = pd.DataFrame([r for r in rows if r["model"] == "final"])
    assert [t.name for t in charts.step_figure(final, title="").data] == [f"final · {CLASSIFY}"]
