"""The study's numbers (``dashboard.study``) from hand-made runs, losses and metrics."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest

from dashboard import study, study_charts
from dashboard.data import LOSS_COLUMNS, METRIC_COLUMNS


def run(run_id: int, algorithm: str, pairs: int | None, seed: int) -> Any:
    sweep = {"seed": seed} if pairs is None else {"pairs": pairs, "seed": seed}
    return {"id": run_id, "algorithm": algorithm, "seed": seed, "sweep": sweep}


def curve(*values: float) -> pd.Series:
    return pd.Series(values, index=range(1, len(values) + 1), dtype=float)


def test_the_runs_m_is_its_sweep_value_else_its_config_else_all() -> None:
    assert study.run_pairs(run(1, "tap", 2, 1)) == 2
    assert study.run_pairs({"sweep": {"seed": 1}, "config": {"pairs": 3}}) == 3  # type: ignore[typeddict-item]
    assert study.run_pairs(run(1, "tap", None, 1)) is None
    assert study.is_pairs_sweep([run(1, "tap", None, 1), run(2, "tap", 1, 1)])
    assert not study.is_pairs_sweep([run(1, "tap", None, 1)])


def test_the_global_loss_of_a_round_weighs_clients_and_tasks_by_their_steps() -> None:
    losses = pd.DataFrame(
        [
            (1, "fl", 0, "global", "digits", 1.0, 1),
            (1, "fl", 1, "global", "text", 4.0, 3),
            (1, "fl", 0, "personal", "digits", 99.0, 1),  # not the global model
            (2, "fl", 0, "global", "digits", 0.5, 2),
            (2, "post", 0, "global", "digits", 99.0, 2),  # not FL
        ],
        columns=LOSS_COLUMNS,
    )
    assert study.global_loss(losses).to_dict() == {1: 3.25, 2: 0.5}
    assert study.global_loss(losses.iloc[0:0]).empty


def test_loss_curves_are_the_mean_and_std_over_seeds_per_algorithm_and_m() -> None:
    runs = [run(1, "tap", 1, 1), run(2, "tap", 1, 2), run(3, "tap", 2, 1)]
    losses = {1: curve(2.0, 1.0), 2: curve(4.0, 3.0), 3: curve(5.0, 4.0)}
    curves = study.loss_curves(runs, losses)
    one = curves[curves["pairs"] == 1]
    assert one["mean"].tolist() == [3.0, 2.0]
    assert one["std"].tolist() == pytest.approx([math.sqrt(2)] * 2)
    assert one["n"].tolist() == [2, 2]
    assert curves[curves["pairs"] == 2]["mean"].tolist() == [5.0, 4.0]
    # the highest last-round mean: M=2's 4.0, which every group reaches
    assert study.default_threshold(curves) == 4.0


def test_rounds_to_threshold_count_the_seeds_that_reach_it() -> None:
    runs = [run(1, "tap", 1, 1), run(2, "tap", 1, 2), run(3, "fedavg", 3, 1)]
    losses = {1: curve(3.0, 1.5, 0.9), 2: curve(2.0, 1.0, 0.5), 3: curve(3.0, 2.5, 2.0)}
    reached = study.rounds_to_threshold(runs, losses, 1.0).set_index("algorithm")
    assert reached.loc["tap", "mean"] == 2.5  # rounds 3 and 2
    assert (reached.loc["tap", "reached"], reached.loc["tap", "n"]) == (2, 2)
    assert math.isnan(reached.loc["fedavg", "mean"])
    assert (reached.loc["fedavg", "reached"], reached.loc["fedavg", "n"]) == (0, 1)
    assert int(reached.loc["fedavg", "pairs"]) == 3


def test_finals_take_each_tasks_main_metric_at_its_last_round_over_clients_then_seeds() -> None:
    def metrics(value: float) -> pd.DataFrame:
        return pd.DataFrame(
            [
                (4, "post", 0, "digits", "final", "local", "accuracy", 0.0),  # earlier round
                (5, "post", 0, "digits", "final", "local", "accuracy", value),
                (5, "post", 1, "digits", "final", "local", "accuracy", value + 0.2),
                (5, "post", 0, "digits", "final", "local", "loss", 9.0),  # not the main metric
                (5, "post", 0, "digits", "global", "local", "accuracy", 9.0),  # not final
                (5, "post", 0, "digits", "final", "pooled", "accuracy", 0.3),
            ],
            columns=METRIC_COLUMNS,
        )

    mains = {"digits": "accuracy"}
    runs = [run(1, "tap", 2, 1), run(2, "tap", 2, 2)]
    per_run = {1: study.run_finals(metrics(0.4), mains), 2: study.run_finals(metrics(0.6), mains)}
    assert per_run[1].set_index("split")["value"].to_dict() == pytest.approx(
        {"local": 0.5, "pooled": 0.3}
    )
    final = study.finals(runs, per_run).set_index("split")
    assert final.loc["local", "mean"] == pytest.approx(0.6)
    assert final.loc["local", "n"] == 2
    assert int(final.loc["local", "pairs"]) == 2

    reached = study.rounds_to_threshold(runs, {1: curve(1.0), 2: curve(2.0)}, 1.5)
    table = study.study_table(reached, study.finals(runs, per_run))
    assert table.columns.tolist() == [
        "algorithm",
        "pairs",
        "rounds to threshold",
        "digits personalization (accuracy)",
        "digits generalization (accuracy)",
    ]
    [row] = table.to_dict("records")
    assert row["pairs"] == "M=2" and row["rounds to threshold"] == "1.0000 (1/2)"
    assert row["digits personalization (accuracy)"] == "0.6000 ± 0.1414"
    latex = study.latex_table(table, caption="c", label="tab:x")
    assert "\\toprule" in latex and "0.6000 $\\pm$ 0.1414" in latex


def test_a_sweep_without_pairs_values_groups_as_all_pairs() -> None:
    runs = [run(1, "tap", None, 1)]
    curves = study.loss_curves(runs, {1: curve(1.0)})
    assert curves["pairs"].isna().all()
    table = study.study_table(
        study.rounds_to_threshold(runs, {1: curve(1.0)}, 2.0),
        pd.DataFrame(columns=study.FINAL_COLUMNS),
    )
    assert table["pairs"].tolist() == ["all pairs"]


def test_each_m_has_its_own_colour_and_line() -> None:
    colors = study_charts.pairs_colors([1, 2, 3])
    assert list(colors) == ["M=1", "M=2", "M=3"] and len(set(colors.values())) == 3
    curves = study.loss_curves(
        [run(1, "tap", 1, 1), run(2, "tap", 2, 1)], {1: curve(2.0, 1.0), 2: curve(3.0, 2.0)}
    )
    figure = study_charts.loss_figure(curves, algorithm="tap", colors=colors)
    assert [t.name for t in figure.data if t.showlegend is not False] == ["M=1", "M=2"]


def test_charts_against_m_name_their_one_algorithm_and_step_by_whole_values() -> None:
    reached = pd.DataFrame(
        {"algorithm": ["tap", "tap"], "pairs": [1, 2], "mean": [3.0, 4.0], "std": [0.5, None]}
    )
    figure = study_charts.against_pairs_figure(
        reached, title="t", y_title="rounds", colors={"tap": "#112233"}
    )
    [line] = figure.data
    assert line.name == "tap" and line.line.color == "#112233"
    assert list(line.x) == [1, 2] and list(line.error_y.array) == [0.5, 0.0]
    assert figure.layout.showlegend is True and figure.layout.xaxis.dtick == 1
