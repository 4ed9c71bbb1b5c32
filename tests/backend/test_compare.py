"""GET /compare: runs grouped by config without the seed, mean ± std over each group's runs
per client, task and round, and of each run's last evaluated value."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from backend.models import Metric, RunStatus
from tap_engine import catalog
from tests.backend.conftest import Api, add_run

URL = "/api/v1/compare"


def _metric(run_id: int, rnd: int, value: float, **kw: Any) -> Metric:
    fields = {
        "stage": "fl",
        "client": 0,
        "task": "t",
        "model": "personal",
        "split": "local",
        "metric": "accuracy",
        "n": 8,
    } | kw
    return Metric(run_id=run_id, round=rnd, value=value, **fields)


@pytest.fixture
def runs(sessions: sessionmaker[Session]) -> dict[str, list[int]]:
    """tap (seeds 1, 2), tap with kd_lambda 0.01 (seeds 1, 2), fedavg (seed 1)."""
    values = {  # run -> {round: accuracy of client 0}
        ("tap", 1, None): {1: 0.5, 2: 0.6},
        ("tap", 2, None): {1: 0.7, 2: 0.8, 3: 0.9},  # one more evaluated round
        ("tap", 1, 0.01): {1: 0.4, 2: 0.4},
        ("tap", 2, 0.01): {1: 0.4, 2: 0.6},
        ("fedavg", 1, None): {1: 0.3, 2: 0.35},
    }
    ids: dict[str, list[int]] = {"tap": [], "tap_kd": [], "fedavg": []}
    with sessions() as session:
        for (algorithm, seed, kd), curve in values.items():
            overrides: dict[str, Any] = {"algorithm": algorithm, "seed": seed}
            if kd is not None:
                overrides["kd_lambda"] = kd
            run = add_run(session, **overrides)
            run.status = RunStatus.SUCCEEDED
            ids["tap_kd" if kd else algorithm].append(run.id)
            for rnd, value in curve.items():
                session.add(_metric(run.id, rnd, value))
                session.add(_metric(run.id, rnd, 1 - value, client=1, task="u"))
                # rows the query must leave out: other split, model, metric
                session.add(_metric(run.id, rnd, 9.0, split="pooled"))
                session.add(_metric(run.id, rnd, 9.0, model="global"))
                session.add(_metric(run.id, rnd, 9.0, metric="loss"))
            session.add(_metric(run.id, 3, 0.99, stage="post", model="final"))
        session.commit()
    return ids


def _ids(run_ids: dict[str, list[int]]) -> str:
    return ",".join(str(i) for group in run_ids.values() for i in group)


def test_runs_are_grouped_by_config_without_seed_with_mean_std_and_n(
    api: Api, runs: dict[str, list[int]]
) -> None:
    response = api.get(URL, params={"runs": _ids(runs), "metric": "accuracy"})
    assert response.status_code == 200, response.text
    body = response.json()
    query = (body["metric"], body["split"], body["model"], body["higher_is_better"])
    assert query == ("accuracy", "local", "personal", True)
    tap, tap_kd, fedavg = body["groups"]
    assert (tap["run_ids"], tap["seeds"]) == (runs["tap"], [1, 2])
    assert (tap_kd["run_ids"], fedavg["run_ids"]) == (runs["tap_kd"], runs["fedavg"])
    assert (tap["algorithm"], fedavg["algorithm"]) == ("tap", "fedavg")
    assert len({tap["key"], tap_kd["key"], fedavg["key"]}) == 3
    assert tap["label"] == "tap, kd_lambda=0.002"
    assert tap_kd["label"] == "tap, kd_lambda=0.01"
    assert fedavg["label"].startswith("fedavg")

    curve0, curve1 = tap["curves"]
    assert (curve0["client"], curve0["task"], curve1["client"], curve1["task"]) == (0, "t", 1, "u")
    assert curve0["rounds"] == [1, 2, 3]
    assert curve0["mean"] == pytest.approx([0.6, 0.7, 0.9])
    assert curve0["std"] == pytest.approx([0.1, 0.1, 0.0])  # population std; one run: 0
    assert curve0["n"] == [2, 2, 1]
    assert curve1["mean"] == pytest.approx([0.4, 0.3, 0.1])
    assert fedavg["curves"][0]["std"] == [0.0, 0.0]

    # final: each run's last evaluated round (run 1 at round 2, run 2 at round 3)
    final = {(f["client"], f["task"]): f for f in tap["final"]}
    assert final[(0, "t")]["mean"] == pytest.approx(0.75)
    assert final[(0, "t")]["std"] == pytest.approx(0.15)
    assert final[(0, "t")]["n"] == 2
    kd_final = {(f["client"], f["task"]): f for f in tap_kd["final"]}
    assert kd_final[(0, "t")]["mean"] == pytest.approx(0.5)
    assert kd_final[(0, "t")]["std"] == pytest.approx(0.1)
    # and each run's own final value, to pair runs by seed
    assert final[(0, "t")]["values"] == [
        {"run_id": runs["tap"][0], "seed": 1, "value": pytest.approx(0.6), "round": 2},
        {"run_id": runs["tap"][1], "seed": 2, "value": pytest.approx(0.9), "round": 3},
    ]
    # the groups' configs, and what sets them apart besides the algorithm
    assert (tap["config"]["kd_lambda"], tap_kd["config"]["kd_lambda"]) == (0.002, 0.01)
    assert "seed" not in tap["config"] and tap["config"]["algorithm"] == "tap"
    assert body["differing"] == [{"key": "kd_lambda", "values": [0.002, 0.01, 0.002]}]
    assert body["excluded"] == []


def test_only_succeeded_runs_are_compared_and_the_others_are_listed(
    api: Api, sessions: sessionmaker[Session], runs: dict[str, list[int]]
) -> None:
    with sessions() as session:
        failed = add_run(session, algorithm="fedavg", seed=3)
        failed.status = RunStatus.FAILED
        queued = add_run(session, algorithm="fedavg", seed=4, rounds=3)  # stays queued
        session.add(_metric(failed.id, 1, 0.0))
        session.commit()
        left_out = [(failed.id, "failed"), (queued.id, "queued")]
    ids = f"{runs['fedavg'][0]},{failed.id},{queued.id}"
    body = api.get(URL, params={"runs": ids, "metric": "accuracy"}).json()
    assert [(e["run_id"], e["status"]) for e in body["excluded"]] == left_out
    [fedavg] = body["groups"]
    assert fedavg["run_ids"] == runs["fedavg"]
    assert [v["run_id"] for v in fedavg["final"][0]["values"]] == runs["fedavg"]
    assert body["differing"] == []  # the queued run's rounds=3 is not compared


def test_a_sweep_group_a_model_only_stage_two_has_and_a_lower_is_better_metric(
    api: Api, runs: dict[str, list[int]]
) -> None:
    group = api.get(f"/api/v1/runs/{runs['tap'][0]}").json()["group_id"]
    by_group = api.get(URL, params={"group": group, "metric": "accuracy", "model": "final"})
    assert by_group.status_code == 200, by_group.text
    groups = by_group.json()["groups"]
    assert sum(len(g["run_ids"]) for g in groups) == 5  # add_run puts all in one group
    [curve] = groups[0]["curves"]
    assert (curve["rounds"], curve["mean"], curve["n"]) == ([3], [0.99], [2])
    loss = api.get(URL, params={"runs": runs["tap"][0], "metric": "loss"}).json()
    assert loss["higher_is_better"] is False
    assert loss["groups"][0]["curves"][0]["mean"] == [9.0, 9.0]


def test_the_constant_answer_compares_like_any_model(
    api: Api, sessions: sessionmaker[Session]
) -> None:
    # Text generation's chance level, at every evaluation round.
    with sessions() as session:
        run = add_run(session)
        run.status = RunStatus.SUCCEEDED
        run_id = run.id
        for rnd in (1, 2):
            session.add(_metric(run_id, rnd, 0.25, model="constant", metric="exact_match"))
        session.commit()
    params = {"runs": str(run_id), "metric": "exact_match", "model": "constant"}
    body = api.get(URL, params=params).json()
    assert (body["model"], body["higher_is_better"]) == ("constant", True)
    [curve] = body["groups"][0]["curves"]
    assert (curve["rounds"], curve["mean"]) == ([1, 2], [0.25, 0.25])


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"metric": "accuracy"}, ["query", "runs"]),
        ({"metric": "accuracy", "runs": "1", "group": "g"}, ["query", "runs"]),
        ({"metric": "accuracy", "runs": "1,x"}, ["query", "runs"]),
        ({"metric": "accuracy", "runs": "9223372036854775808"}, ["query", "runs"]),
        ({"metric": "accuracy", "runs": "1", "split": "test"}, ["query", "split"]),
        ({"metric": "accuracy", "runs": "1", "model": "teacher"}, ["query", "model"]),
        ({"runs": "1"}, ["query", "metric"]),
    ],
)
def test_bad_compare_queries_are_422_naming_the_parameter(
    api: Api, params: dict[str, str], loc: list[str]
) -> None:
    response = api.get(URL, params=params)
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [loc]


def test_unknown_runs_or_group_are_404(api: Api, runs: dict[str, list[int]]) -> None:
    response = api.get(URL, params={"runs": f"{runs['tap'][0]},9999", "metric": "accuracy"})
    assert response.status_code == 404 and "9999" in response.json()["detail"]
    assert api.get(URL, params={"group": "nope", "metric": "accuracy"}).status_code == 404


def test_the_direction_of_a_metric_is_the_catalogs(
    api: Api, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session:
        run_id = add_run(session).id
    pinned = {
        "accuracy": True,
        "meteor": True,
        "meteor_score": True,
        "chrf": True,
        "bertscore_f1": True,
        "token_accuracy": True,
        "exact_match": True,
        "loss": False,
        "mse": False,
        "perplexity": False,
        # Names the catalog does not know: read by their ending, else taken as a loss.
        "val_accuracy": True,
        "reward": False,
    }
    expected = {name: m.higher_is_better for name, m in catalog.METRICS.items()} | pinned
    answered = {
        name: api.get(URL, params={"runs": str(run_id), "metric": name}).json()["higher_is_better"]
        for name in expected
    }
    assert answered == expected


def test_a_diverged_seed_makes_its_means_null_not_a_mean_of_the_others(
    api: Api, sessions: sessionmaker[Session]
) -> None:
    ids = []
    with sessions() as session:
        for seed, last in ((1, 0.4), (2, float("nan"))):
            run = add_run(session, seed=seed)
            run.status = RunStatus.SUCCEEDED
            session.flush()
            ids.append(run.id)
            session.add(_metric(run.id, 1, 0.2, metric="mse"))
            session.add(_metric(run.id, 2, last, metric="mse"))
        session.commit()
    params = {"runs": ",".join(map(str, ids)), "metric": "mse"}
    response = api.get(URL, params=params)
    assert response.status_code == 200, response.text
    [group] = response.json()["groups"]
    [curve], [final] = group["curves"], group["final"]
    assert (curve["rounds"], curve["mean"], curve["n"]) == ([1, 2], [0.2, None], [2, 2])
    assert curve["std"] == [0.0, None]
    assert (final["mean"], final["std"], final["n"]) == (None, None, 2)
    assert [v["value"] for v in final["values"]] == [0.4, None]
