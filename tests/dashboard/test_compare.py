"""The Compare page's arithmetic: best groups, main metrics, warnings and the verdict of one
group against every other (ties from a paired bootstrap over seeds)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

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


Pair = tuple[int, str]


def with_seeds(metric: str, values: dict[str, dict[Pair, list[float | None]]]) -> Comparison:
    """Groups with each run's final value: algorithm -> (client, task) -> a value per seed
    (seeds 1, 2, …)."""
    groups: list[Any] = []
    for algorithm, pairs in values.items():
        finals = []
        for (client, task), per_seed in pairs.items():
            runs = [
                {"run_id": 100 * len(groups) + seed, "seed": seed, "value": v, "round": 3}
                for seed, v in enumerate(per_seed, start=1)
            ]
            finite = [v for v in per_seed if v is not None]
            mean = sum(finite) / len(finite)
            finals.append(
                {"client": client, "task": task, "mean": mean, "std": 0.0, "n": len(per_seed)}
                | {"values": runs}
            )
        seeds = list(range(1, 1 + max(len(v) for v in pairs.values())))
        groups.append(
            {"key": algorithm, "algorithm": algorithm, "label": algorithm, "run_ids": seeds}
            | {"seeds": seeds, "config": {}, "curves": [], "final": finals}
        )
    return {
        "metric": metric,
        "split": "local",
        "model": "final",
        "higher_is_better": metric not in ("mse", "loss"),
        "groups": groups,
        "excluded": [],
        "differing": [],
    }


def judge(*comps: Comparison, ours: str = "tap", pooled: list[Comparison] | None = None) -> Any:
    better = compare.higher_is_better(comps)
    runs = {"local": compare.runs_frame(comps)}
    if pooled is not None:
        runs["pooled"] = compare.runs_frame(pooled)
    return compare.verdict(runs, ours, better)


A, B = (0, "a"), (1, "b")


def test_a_difference_whose_interval_holds_zero_is_a_tie() -> None:
    comp = with_seeds(
        "accuracy",
        {
            "tap": {A: [0.80, 0.90, 0.85], B: [0.90, 0.91, 0.92]},
            "fedavg": {A: [0.84, 0.86, 0.83], B: [0.70, 0.72, 0.71]},
        },
    )
    table = judge(comp).set_index("task")
    tie, win = table.loc["a"], table.loc["b"]
    assert tie["result"] == "tie" and tie["ci_low"] < 0 < tie["ci_high"]
    assert tie["difference"] == pytest.approx(0.85 - 2.53 / 3)
    assert win["result"] == "win" and win["ci_low"] > 0
    assert (win["ours"], win["theirs"]) == (pytest.approx(0.91), pytest.approx(0.71))
    assert win["ci_low"] == pytest.approx(0.19) and win["ci_high"] == pytest.approx(0.21)
    # the interval is the paired bootstrap's: the same every time (a fixed RNG seed)
    assert judge(comp).equals(judge(comp))


def test_one_seed_gives_no_verdict_even_for_a_large_gap() -> None:
    comp = with_seeds("accuracy", {"tap": {A: [0.9]}, "fedavg": {A: [0.5, 0.52]}})
    [row] = judge(comp).to_dict("records")
    assert row["result"] == compare.ONE_SEED
    assert row["difference"] == pytest.approx(0.39)
    [summary] = compare.verdict_summary(judge(comp)).to_dict("records")
    assert (summary["wins"], summary["ties"], summary["losses"]) == (0, 0, 0)
    assert summary["no verdict"] == 1
    assert "without a verdict: one seed" in compare.headline("tap", pd.DataFrame([summary]))


def test_a_lower_loss_or_mse_is_a_win() -> None:
    for metric in ("mse", "loss"):
        comp = with_seeds(
            metric,
            {"tap": {A: [0.10, 0.11], B: [0.5, 0.6]}, "local": {A: [0.2, 0.21], B: [0.1, 0.1]}},
        )
        results = judge(comp).set_index("task")["result"]
        assert (results["a"], results["b"]) == ("win", "loss"), metric


def test_a_pair_that_one_group_lacks_is_not_counted_and_said_so() -> None:
    comp = with_seeds(
        "accuracy",
        {"tap": {A: [0.9, 0.91], B: [0.5, 0.5]}, "fedavg": {A: [0.8, 0.81], (2, "c"): [0.3, 0.3]}},
    )
    table = judge(comp).set_index("client")
    assert table.loc[0, "result"] == "win"
    assert table.loc[1, "result"] == "missing in fedavg: not counted"
    assert table.loc[2, "result"] == "missing in tap: not counted"
    [summary] = compare.verdict_summary(judge(comp)).to_dict("records")
    assert (summary["wins"], summary["pairs"], summary["not counted"]) == (1, 1, 2)
    assert "of 1 client-task pairs, 2 not counted" in compare.headline(
        "tap", pd.DataFrame([summary])
    )


def test_a_pair_with_a_diverged_seed_is_not_counted_and_its_mean_is_not_finite() -> None:
    """The API serves a NaN or infinite value as null: that pair gets no verdict (a mean
    without the diverged seed would hide it), and the final table says "not finite"."""
    comp = with_seeds(
        "mse",
        {"tap": {A: [0.1, 0.11], B: [0.2, None]}, "fedavg": {A: [0.2, 0.21], B: [0.3, 0.3]}},
    )
    table = judge(comp).set_index("task")
    assert table.loc["a", "result"] == "win"
    assert table.loc["b", "result"] == "not finite in tap: not counted"
    [summary] = compare.verdict_summary(judge(comp)).to_dict("records")
    assert (summary["wins"], summary["pairs"], summary["not counted"]) == (1, 1, 1)
    comp["groups"][0]["final"][1] |= {"mean": None, "std": None}
    finals = compare.finals_frame([comp])
    final = compare.final_table(finals, {"mse": False}).set_index("task")
    assert final.loc["b", "tap"] == "not finite"
    assert final.loc["b", "best"] == "fedavg"


def test_four_algorithms_each_get_a_verdict_and_the_headline_matches_the_table() -> None:
    per_algorithm = {
        "tap": [0.90, 0.92],
        "fedavg": [0.70, 0.72],
        "fedavg_ft": [0.89, 0.93],
        "local": [0.95, 0.97],
    }
    local = with_seeds("accuracy", {a: {A: v, B: v} for a, v in per_algorithm.items()})
    pooled = with_seeds(
        "accuracy", {a: {A: [1 - x for x in v], B: v} for a, v in per_algorithm.items()}
    )
    table = judge(local, pooled=[pooled])
    summary = compare.verdict_summary(table)
    assert list(zip(summary["vs"], summary["on"], strict=True)) == [
        (rival, on)
        for rival in ("fedavg", "fedavg_ft", "local")
        for on in ("personalization", "generalization")
    ]
    by = summary.set_index(["vs", "on"])
    assert by.loc[("fedavg", "personalization"), "wins"] == 2
    assert by.loc[("fedavg_ft", "personalization"), "ties"] == 2
    assert by.loc[("local", "personalization"), "losses"] == 2
    assert by.loc[("local", "generalization"), ["wins", "losses"]].tolist() == [1, 1]
    text = compare.headline("tap", summary)
    # one line per rival, and every count in it is the table's
    lines = text.split("  \n")
    assert len(lines) == 3
    for line, (rival, rows) in zip(lines, summary.groupby("vs", sort=False), strict=True):
        assert line.startswith(f"**tap** vs **{rival}**")
        for row in rows.to_dict("records"):
            expected = (
                f"{row['on']}: {row['wins']} win{'s' * (row['wins'] != 1)}, "
                f"{row['ties']} tie{'s' * (row['ties'] != 1)}, "
                f"{row['losses']} loss{'es' * (row['losses'] != 1)} of {row['pairs']} "
                "client-task pairs"
            )
            assert expected in line
    # any group can be "ours"
    theirs = compare.verdict_summary(judge(local, ours="local"))
    assert set(theirs["vs"]) == {"tap", "fedavg", "fedavg_ft"}


def test_main_only_keeps_each_tasks_own_main_metric() -> None:
    catalog: Any = {
        "metrics": [
            {"name": "accuracy", "main_for": ["image_classification"], "quality": True},
            {"name": "loss", "main_for": [], "quality": False},
            {"name": "mse", "main_for": ["image_generation"], "quality": True},
            {"name": "chrf", "main_for": ["text_generation"], "quality": True},
            {"name": "exact_match", "main_for": [], "quality": True},
        ]
    }
    mains = compare.task_mains(
        {
            "digits": ["accuracy", "loss"],
            "vqa": ["chrf", "exact_match", "loss"],
            "captions": ["exact_match", "loss"],
            "losses_only": ["loss"],
        },
        catalog,
    )
    assert mains == {"digits": "accuracy", "vqa": "chrf", "captions": "exact_match"}
    frame = pd.DataFrame(
        {
            "task": ["digits", "digits", "vqa", "vqa", "losses_only"],
            "metric": ["accuracy", "loss", "chrf", "loss", "loss"],
        }
    )
    kept = compare.main_only(frame, mains)
    assert list(zip(kept["task"], kept["metric"], strict=True)) == [
        ("digits", "accuracy"),
        ("vqa", "chrf"),
    ]


def test_warnings_name_differing_keys_single_seeds_and_left_out_runs() -> None:
    comp = with_seeds("accuracy", {"tap": {A: [0.9, 0.8]}, "local": {A: [0.7]}})
    comp["differing"] = [{"key": "rounds", "values": [12, 3]}]
    comp["excluded"] = [{"run_id": 7, "status": "failed"}, {"run_id": 5, "status": "running"}]
    text = compare.warnings([comp, comp])
    assert text == [
        "The groups differ in `rounds` (tap: 12, local: 3), not only in the algorithm and "
        "the seed: the verdict compares different experiments.",
        "`local` has one seed: no verdict on it (it needs two seeds or more).",
        "Left out, as they have not succeeded: #5 (running), #7 (failed).",
    ]


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
