"""The Compare page's arithmetic: best groups, ties within noise, and the TAP verdict."""

from __future__ import annotations

from typing import Any

from backend.client.types import Comparison
from dashboard import compare


def comparison(metric: str, finals: dict[str, tuple[float, float]], *, n: int = 3) -> Comparison:
    """One client and task; ``finals``: algorithm -> (mean, std)."""
    higher = metric != "mse"
    groups: list[Any] = [
        {
            "key": algorithm,
            "algorithm": algorithm,
            "label": algorithm,
            "run_ids": list(range(n)),
            "seeds": list(range(n)),
            "curves": [
                {
                    "client": 0,
                    "task": "t",
                    "rounds": [1, 2],
                    "mean": [mean / 2, mean],
                    "std": [std, std],
                    "n": [n, n],
                }
            ],
            "final": [{"client": 0, "task": "t", "mean": mean, "std": std, "n": n}],
        }
        for algorithm, (mean, std) in finals.items()
    ]
    return {
        "metric": metric,
        "split": "local",
        "model": "final",
        "higher_is_better": higher,
        "groups": groups,
    }


def test_final_table_marks_the_lowest_mse_and_the_highest_accuracy() -> None:
    comps = [
        comparison("accuracy", {"tap": (0.9, 0.01), "fedavg": (0.8, 0.01)}),
        comparison("mse", {"tap": (0.2, 0.01), "fedavg": (0.1, 0.01)}),
    ]
    table = compare.final_table(compare.finals_frame(comps), compare.higher_is_better(comps))
    assert list(table["best"]) == ["tap", "fedavg"]
    assert table.loc[0, "tap"] == "★ 0.9000 ± 0.0100"
    assert table.loc[1, "fedavg"] == "★ 0.1000 ± 0.0100"


def test_one_seed_shows_no_std() -> None:
    comps = [comparison("accuracy", {"tap": (0.9, 0.0)}, n=1)]
    table = compare.final_table(compare.finals_frame(comps), {"accuracy": True})
    assert table.loc[0, "tap"] == "★ 0.9000"


def summarize(local: Comparison, pooled: Comparison) -> Any:
    better = compare.higher_is_better([local])
    return compare.summary(
        compare.finals_frame([local]), compare.finals_frame([pooled]), better
    ).iloc[0]


def test_a_difference_within_the_seeds_std_is_a_tie() -> None:
    local = comparison(
        "accuracy", {"tap": (0.85, 0.03), "fedavg": (0.84, 0.03), "local": (0.70, 0.01)}
    )
    pooled = comparison("accuracy", {"tap": (0.60, 0.01), "fedavg": (0.70, 0.01)})
    row = summarize(local, pooled)
    assert row["vs fedavg"] == "tie (+0.0100)"
    assert row["vs local"] == "better (+0.1500)"
    assert row["TAP beat all"] == "no"
    assert row["generalization vs fedavg"] == "worse (-0.1000)"  # what personalizing cost


def test_lower_mse_counts_as_better() -> None:
    local = comparison("mse", {"tap": (0.10, 0.0), "fedavg": (0.20, 0.0), "local": (0.15, 0.0)})
    row = summarize(local, local)
    assert row["vs fedavg"] == "better (+0.1000)"
    assert row["vs local"] == "better (+0.0500)"
    assert row["TAP beat all"] == "yes"
    assert "**1 of 1**" in compare.headline(
        compare.summary(
            compare.finals_frame([local]), compare.finals_frame([local]), {"mse": False}
        )
    )


def test_no_verdict_without_tap_or_without_a_baseline() -> None:
    no_tap = comparison("accuracy", {"fedavg": (0.8, 0.0), "local": (0.7, 0.0)})
    only_tap = comparison("accuracy", {"tap": (0.8, 0.0)})
    for comp in (no_tap, only_tap):
        frame = compare.finals_frame([comp])
        assert compare.summary(frame, frame, {"accuracy": True}).empty


def test_tradeoff_pairs_each_groups_local_and_pooled_value() -> None:
    local = compare.finals_frame([comparison("accuracy", {"tap": (0.9, 0.0), "local": (0.95, 0)})])
    pooled = compare.finals_frame([comparison("accuracy", {"tap": (0.8, 0.0), "local": (0.5, 0)})])
    points = compare.tradeoff_frame(local, pooled).set_index("label")
    assert points.loc["tap", "personalization"] == 0.9
    assert points.loc["local", "generalization"] == 0.5


def test_curves_frame_has_a_row_per_round() -> None:
    curves = compare.curves_frame([comparison("accuracy", {"tap": (0.9, 0.02)})])
    assert list(curves["round"]) == [1, 2]
    assert list(curves["mean"]) == [0.45, 0.9]
