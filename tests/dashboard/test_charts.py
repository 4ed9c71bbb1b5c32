"""Figures: one visual language (colour = model, solid = local, dashed = pooled), and
colours per algorithm from the catalog."""

from __future__ import annotations

import itertools
from typing import Any

import pandas as pd
import pytest

from dashboard import chart_style, compare_charts, personalization, vega
from dashboard import run_charts as charts
from tap_engine import catalog
from tests.dashboard import vega as drawn

CLASSIFY = "digits_image_classification"
GENERATE = "digits_image_generation"
# client -> tasks, like a small demo preset: client 1 holds two tasks.
CLIENT_TASKS: dict[int, list[str]] = {0: [CLASSIFY], 1: [CLASSIFY, GENERATE], 2: [GENERATE]}
TASK_METRICS = {CLASSIFY: ["accuracy", "loss"], GENERATE: ["mse", "loss"]}
PANELS = [(client, task) for client, tasks in CLIENT_TASKS.items() for task in tasks]


def metric_rows(rounds: tuple[int, ...] = (0, 2, 4)) -> list[dict[str, Any]]:
    """FL rounds: global and personal models; after FL (stage post): the final model."""
    rows = []
    for client, tasks in CLIENT_TASKS.items():
        for task, metric in ((t, m) for t in tasks for m in TASK_METRICS[t]):
            lines = [
                ("fl", model, split, r)
                for model, split in itertools.product(("global", "personal"), ("local", "pooled"))
                for r in rounds
            ]
            lines += [("post", "final", split, rounds[-1]) for split in ("local", "pooled")]
            for stage, model, split, r in lines:
                value = 0.5 + 0.08 * r + (0.05 if model != "global" else 0.0) + 0.01 * client
                value = value if metric == "accuracy" else 1 / (1 + value)
                rows.append(
                    {
                        "round": r,
                        "stage": stage,
                        "client": client,
                        "task": task,
                        "model": model,
                        "split": split,
                        "metric": metric,
                        "value": value,
                    }
                )
    return rows


def metrics_frame() -> pd.DataFrame:
    return pd.DataFrame(metric_rows())


def loss_rows(rounds: int = 4) -> list[dict[str, Any]]:
    return [
        {
            "round": r,
            "stage": "fl",
            "client": client,
            "model": model,
            "task": task,
            "loss": 2.0 / (r + 1) + (0.1 if model == "global" else 0.0),
            "steps": 15,
        }
        for client, tasks in CLIENT_TASKS.items()
        for task in tasks
        for model in ("global", "personal")
        for r in range(1, rounds + 1)
    ]


def step_rows(
    steps: int = 4, round_: int = 4, client_tasks: dict[int, list[str]] = CLIENT_TASKS
) -> list[dict[str, Any]]:
    """A TAP run's stage 2 step by step: the teacher's (global_ft) and the student's (final)
    task losses, and the student's lambda x KD per task, three orders of magnitude smaller."""
    rows = []
    for client, tasks in client_tasks.items():
        for model in ("global_ft", "final"):
            terms = ["task", "kd"] if model == "final" else ["task"]
            for step, term, task in itertools.product(range(1, steps + 1), terms, tasks):
                loss = 2.0 / step + (0.2 if model == "final" else 0.0)
                value = loss if term == "task" else 0.002 / step
                rows.append(
                    {
                        "round": round_,
                        "stage": "post",
                        "client": client,
                        "model": model,
                        "step": step,
                        "micro_batches": 4,
                        "term": term,
                        "task": task,
                        "value": value,
                    }
                )
    return rows


def test_panels_are_every_client_task_pair_in_reading_order() -> None:
    assert charts.panels(metrics_frame()) == sorted(PANELS)
    assert charts.panels(metrics_frame().iloc[0:0]) == []


def test_metric_spec_draws_a_line_per_model_and_split() -> None:
    frame = metrics_frame()
    one = frame[(frame.client == 0) & (frame.task == CLASSIFY) & (frame.metric == "accuracy")]
    spec = charts.metric_spec(one, metric="accuracy", title="Client 0")
    lines = drawn.series(spec, "line")
    points = drawn.series(spec, "point")
    assert (
        list(lines)
        == list(points)
        == [
            "global · local",
            "global · pooled",
            "personal · local",
            "personal · pooled",
            "final · local",
            "final · pooled",
        ]
    )
    assert {str(lines[n]["strokeDash"]) for n in lines if n.endswith("local")} == {"[]"}
    assert {str(lines[n]["strokeDash"]) for n in lines if n.endswith("pooled")} == {
        str(vega.DASHES["dash"])
    }
    assert lines["global · local"]["color"] == lines["global · pooled"]["color"]
    assert lines["global · local"]["color"] != lines["personal · local"]["color"]
    personal = points["personal · local"]
    assert (personal["shape"], personal["fill"]) == ("circle", personal["stroke"])
    assert (points["personal · pooled"]["shape"], points["personal · pooled"]["fill"]) == (
        "circle",
        "white",  # open markers: pooled
    )
    assert points["final · pooled"]["shape"] == "diamond"  # post stage
    assert points["final · pooled"]["size"] > personal["size"]
    assert personal["x"] == [0, 2, 4]
    assert drawn.axis_title(spec, "y") == "accuracy"
    assert drawn.title_of(spec) == "Client 0"
    assert drawn.texts(spec) == ["stage 2"]


def test_metric_spec_marks_replacements_on_the_grid_s_x_range() -> None:
    frame = metrics_frame()
    one = frame[(frame.client == 0) & (frame.task == CLASSIFY) & (frame.metric == "accuracy")]
    spec = charts.metric_spec(
        one, metric="accuracy", title="", replacement_rounds=[2], rounds=(0, 8)
    )
    marks = drawn.series(spec, "point")[charts.REPLACEMENT]
    assert marks["x"] == [2] and marks["shape"] == "triangle-up"
    assert marks["y"] == [float(one["value"].min())]  # along the bottom
    assert drawn.x_domain(spec) == (-0.5, 8.5)


def test_stages_are_named_once_some_line_spans_two() -> None:
    frame = metrics_frame()
    one = frame[(frame.client == 0) & (frame.task == CLASSIFY) & (frame.metric == "accuracy")]
    extra = one[one.model == "personal"].assign(stage="post", round=6)
    spec = charts.metric_spec(pd.concat([one, extra]), metric="accuracy", title="")
    names = list(drawn.series(spec, "line"))
    assert "personal · local · fl" in names
    assert "personal · local · post" in names
    assert "final · local · post" in names


def test_loss_figure_has_a_line_per_model_and_task() -> None:
    frame = pd.DataFrame(loss_rows())
    figure = charts.loss_figure(frame[frame.client == 1], title="Client 1")
    assert len(figure.data) == 4  # global/personal x two tasks
    assert {trace.line.dash for trace in figure.data} == {"solid", "dot"}


def test_latest_values_takes_the_last_value_of_each_line_with_deltas_to_global() -> None:
    frame = metrics_frame()
    frame = frame[frame.metric.isin(["accuracy", "mse"])]
    table = charts.latest_values(frame)
    assert len(table) == 2 * len(PANELS)  # a row per panel and split
    row = table[(table.client == 0) & (table.metric == "accuracy") & (table.split == "local")]
    last = frame[
        (frame.client == 0)
        & (frame.metric == "accuracy")
        & (frame.model == "personal")
        & (frame.split == "local")
    ]
    personal = last.sort_values("round")["value"].iloc[-1]
    assert row["personal"].iloc[0] == personal
    assert row["personal-global"].iloc[0] == pytest.approx(personal - row["global"].iloc[0])
    assert list(table.columns[4:]) == [
        "global",
        "personal",
        "final",
        "personal-global",
        "final-global",
    ]


def test_gains_flip_lower_is_better_metrics_so_positive_is_better() -> None:
    frame = metrics_frame()
    gained = personalization.gains(
        frame[frame.metric.isin(["accuracy", "mse"])], {"accuracy": True, "mse": False}
    )
    # In the frame the personalized models score 0.05 more before mse's 1 / (1 + x): a
    # better accuracy and a better (lower) mse, both positive here.
    assert set(gained["model"]) == {"personal", "final"}
    assert (gained["bought"] > 0).all() and (gained["cost"] > 0).all()
    mse = gained[gained.metric == "mse"]
    assert mse["lower_is_better"].all()
    assert not gained[gained.metric == "accuracy"]["lower_is_better"].any()


def test_model_kinds_have_distinct_colours_and_unknown_ones_none_of_theirs() -> None:
    known = list(charts.MODEL_COLORS.values())
    assert len(set(known)) == len(known)
    assert charts.model_color("global_ft") != charts.model_color("global")
    assert charts.model_color("ensemble") not in known
    assert charts.model_color("ensemble") == charts.model_color("ensemble")


def with_constant(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame plus the chance level of each line of the global model."""
    chance = frame[frame.model == "global"].assign(model="constant", value=0.1)
    return pd.concat([frame, chance], ignore_index=True)


def test_the_constant_answer_is_a_grey_dotted_line_named_as_chance() -> None:
    frame = with_constant(metrics_frame())
    one = frame[(frame.client == 0) & (frame.task == CLASSIFY) & (frame.metric == "accuracy")]
    spec = charts.metric_spec(one, metric="accuracy", title="")
    lines, points = drawn.series(spec, "line"), drawn.series(spec, "point")
    chance = "constant answer (chance)"
    # Last of the FL models; stage 2's final model comes after the FL rounds.
    assert list(lines)[2:6] == [
        "personal · local",
        "personal · pooled",
        f"{chance} · local",
        f"{chance} · pooled",
    ]
    local, pooled = lines[f"{chance} · local"], lines[f"{chance} · pooled"]
    assert (local["strokeDash"], pooled["strokeDash"]) == (
        vega.DASHES["dot"],
        vega.DASHES["dashdot"],
    )
    others = {t["color"] for name, t in lines.items() if not name.startswith(chance)}
    assert local["color"] == pooled["color"] not in others
    assert points[f"{chance} · pooled"]["fill"] == "white"  # the split reads from the markers


def test_latest_values_put_the_constant_answer_after_the_models() -> None:
    frame = with_constant(metrics_frame())
    table = charts.latest_values(frame[frame.metric == "accuracy"])
    models = ["global", "personal", "final", "constant"]
    assert list(table.columns[4:8]) == models


def test_step_figure_draws_teacher_student_and_kd_per_task_on_a_log_axis() -> None:
    frame = pd.DataFrame(step_rows(steps=3))
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
    rows = step_rows(steps=2, client_tasks={0: [CLASSIFY]})
    batch = {**rows[-1], "term": "orthogonality", "task": "", "value": 0.05}
    again = [{**row, "round": 5} for row in rows if row["model"] == "final"]
    figure = charts.step_figure(pd.DataFrame([*rows, batch, *again]), title="")
    names = [t.name for t in figure.data]
    assert "student orthogonality · round 4" in names
    assert f"student · {CLASSIFY} · round 4" in names
    assert f"student · {CLASSIFY} · round 5" in names


def test_without_a_teacher_the_fine_tuned_model_keeps_its_own_name() -> None:
    # fedavg_ft fine-tunes the global model into "final": there is no student.
    rows = [r for r in step_rows(steps=2, client_tasks={0: [CLASSIFY]}) if r["term"] == "task"]
    final = pd.DataFrame([r for r in rows if r["model"] == "final"])
    assert [t.name for t in charts.step_figure(final, title="").data] == [f"final · {CLASSIFY}"]


# -- colours ----------------------------------------------------------------------------------


def served(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    """The algorithms as ``GET /catalog`` lists them, with ``extra`` ones after them."""
    return [*catalog.as_dict()["algorithms"], *extra]


def test_algorithms_keep_the_catalogs_colour_and_others_get_free_ones_in_order() -> None:
    new = [{"name": f"plugin{i}", "description": "", "color": None} for i in range(3)]
    colors = chart_style.algorithm_colors(served(*new))
    assert colors["tap"] == catalog.algorithm("tap").color
    built_in = {a.color for a in catalog.algorithms().values()}
    spare = [colors[f"plugin{i}"] for i in range(3)]
    assert len(set(spare)) == 3 and not set(spare) & built_in
    # By catalog order: the first plugin's colour does not depend on those after it.
    assert chart_style.algorithm_colors(served(new[0]))["plugin0"] == spare[0]


def test_a_second_group_of_one_algorithm_gets_its_own_colour() -> None:
    colors = chart_style.algorithm_colors(served())
    groups = chart_style.group_colors(
        [
            ("tap seed sweep", "tap"),
            ("tap lr=1e-3", "tap"),
            ("fedavg", "fedavg"),
            ("unknown", "not_in_catalog"),
        ],
        colors,
    )
    assert groups["tap seed sweep"] == colors["tap"]
    assert groups["fedavg"] == colors["fedavg"]
    assert len(set(groups.values())) == 4
    assert groups["tap lr=1e-3"] not in colors.values()


def test_compare_figure_draws_a_band_and_a_line_per_group_in_its_colour() -> None:
    curves = pd.DataFrame(
        [
            {"label": label, "round": r, "mean": 0.5 + r / 10, "std": 0.02, "n": 3}
            for label in ("tap", "fedavg")
            for r in (1, 2, 3)
        ]
    )
    colors = {"tap": "#ff8700", "fedavg": "#1c83e1"}
    figure = compare_charts.compare_figure(curves, metric="accuracy", title="", colors=colors)
    lines = [t for t in figure.data if t.fill is None]
    bands = [t for t in figure.data if t.fill == "toself"]
    assert [(t.name, t.line.color) for t in lines] == [("tap", "#ff8700"), ("fedavg", "#1c83e1")]
    assert bands[0].fillcolor == "rgba(255, 135, 0, 0.18)"
    assert list(bands[0].y) == pytest.approx([0.62, 0.72, 0.82, 0.78, 0.68, 0.58])


def test_compare_spec_draws_a_band_and_a_line_per_group_in_its_colour() -> None:
    curves = pd.DataFrame(
        [
            {"label": label, "round": r, "mean": 0.5 + r / 10, "std": 0.02, "n": 3}
            for label in ("tap", "fedavg")
            for r in (1, 2, 3)
        ]
    )
    colors = {"tap": "#ff8700", "fedavg": "#1c83e1"}
    spec = compare_charts.compare_spec(
        curves, metric="mse", title="Client 0", colors=colors, higher_is_better=False, rounds=(0, 5)
    )
    assert drawn.scale_colors(spec) == colors
    band = [d for d in drawn.drawn(spec, "area") if d["color"] == "tap"]
    assert [d["y"] for d in band] == pytest.approx([0.58, 0.68, 0.78])
    assert [d["y2"] for d in band] == pytest.approx([0.62, 0.72, 0.82])
    line = drawn.series(spec, "line", key="label")
    assert line["tap"]["x"] == [1, 2, 3] and line["fedavg"]["y"] == pytest.approx([0.6, 0.7, 0.8])
    assert drawn.axis_title(spec, "y") == "mse (lower is better)"
    assert drawn.x_domain(spec) == (-0.5, 5.5)


def test_a_grid_legend_names_every_group_in_its_colour() -> None:
    colors = {"tap": "#ff8700", "fedavg": "#1c83e1"}
    spec = compare_charts.legend_spec(colors)
    assert drawn.scale_colors(spec) == colors
    assert spec["encoding"]["color"]["legend"]["orient"] == "top"


def test_tradeoff_spec_puts_a_point_per_client_and_task_in_its_group_colour() -> None:
    points = pd.DataFrame(
        [
            {
                "label": "tap",
                "client": 0,
                "task": CLASSIFY,
                "metric": "accuracy",
                "personalization": 0.9,
                "generalization": 0.6,
            },
            {
                "label": "fedavg",
                "client": 0,
                "task": CLASSIFY,
                "metric": "accuracy",
                "personalization": 0.7,
                "generalization": 0.8,
            },
        ]
    )
    colors = {"tap": "#ff8700", "fedavg": "#1c83e1"}
    spec = compare_charts.tradeoff_spec(points, colors=colors)
    assert [(d["color"], d["x"], d["y"]) for d in drawn.drawn(spec, "point")] == [
        ("tap", 0.6, 0.9),
        ("fedavg", 0.8, 0.7),
    ]
    assert drawn.scale_colors(spec) == colors
    assert drawn.axis_title(spec, "y") == "personalization: accuracy on own test data"
