"""The study report's own numbers: the rank correlation between M and the loss, and the
loss of the one task every variant holds."""

import pandas as pd
import pytest

from dashboard import study_report
from dashboard.data import LOSS_COLUMNS


def _curves(rows: list[tuple[str, int, int, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["algorithm", "pairs", "round", "mean"])
    frame["pairs"] = frame["pairs"].astype("Int64")
    return frame.assign(std=0.0, n=3)


def test_rho_is_plus_one_when_the_loss_grows_with_m_and_minus_one_when_it_falls() -> None:
    curves = _curves(
        [("tap", m, 1, 1.0 + m) for m in (1, 2, 3, 4)]
        + [("tap", m, 2, 1.0 - 0.1 * m) for m in (1, 2, 3, 4)]
        + [("fedavg", m, 1, 1.0) for m in (1, 2, 3)]
    )
    rho = study_report.rank_correlation(curves, "tap")
    assert rho.to_dict("list") == {"round": [1, 2], "rho": [pytest.approx(1.0), -1.0]}


def test_a_round_with_fewer_than_three_values_of_m_has_no_rho() -> None:
    curves = _curves([("tap", 1, 1, 1.0), ("tap", 2, 1, 2.0), ("tap", 3, 2, 1.0)])
    assert study_report.rank_correlation(curves, "tap").empty


def test_the_shared_task_loss_ignores_the_other_tasks_of_a_round() -> None:
    losses = pd.DataFrame(
        [
            (1, "fl", 0, "global", "digits", 2.0, 10),
            (1, "fl", 1, "global", "digits", 1.0, 30),
            (1, "fl", 2, "global", "shapes_vqa", 9.0, 10),
        ],
        columns=LOSS_COLUMNS,
    )
    curve = study_report.shared_task_loss(losses, "digits")
    assert curve.to_dict() == {1: pytest.approx((2.0 * 10 + 1.0 * 30) / 40)}
