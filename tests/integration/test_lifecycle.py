"""The run lifecycle against a real deployment: a real redis-server, the API under uvicorn
with its reconciler, Celery worker processes that the tests kill, stop and replace, the
real engine and SQLite. These are issue 5's acceptance tests."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from backend.queue import CeleryRunQueue
from backend.settings import MIN_RUN_TIME_LIMIT_S
from tap_engine import runner
from tap_engine.checkpoint import latest_checkpoint
from tap_engine.config import RunConfig
from tap_engine.events import Evaluation
from tests.conftest import tapfl_command
from tests.integration.cluster import Cluster, make_cluster, queue_contents, quick

pytestmark = pytest.mark.integration

SHORT = quick(rounds=1, local_steps=1)
LONG = quick(rounds=6)  # several rounds, to be hit in the middle


@pytest.fixture(scope="session")
def engine_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engine-cache")


def _cluster(home: Path, cache: Path, **env: str) -> Iterator[Cluster]:
    cluster = make_cluster(home, cache, **env)
    try:
        cluster.start_redis()
        cluster.start_api()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster(tmp_path: Path, engine_cache: Path) -> Iterator[Cluster]:
    """Redis and the API (with its reconciler); each test starts its own workers."""
    yield from _cluster(tmp_path / "home", engine_cache)


@pytest.fixture
def cluster_without_reconciler(tmp_path: Path, engine_cache: Path) -> Iterator[Cluster]:
    """The same, with an API that never reconciles: Celery and the workers on their own."""
    yield from _cluster(tmp_path / "home", engine_cache, TAPFL_RECONCILE_INTERVAL_S="0")


@pytest.fixture(scope="module")
def reference(engine_cache: Path) -> Iterator[Any]:
    """Metrics of an uninterrupted run of a config, by config (computed once per config).

    The run happens in a process forked from this one after torch was loaded, which is how
    a Celery pool process runs a run: torch then computes in the calling thread with the
    chunking of the configured thread count, and its numbers depend on that.
    """
    cache: dict[str, dict[tuple[Any, ...], float]] = {}

    def metrics_of(config: dict[str, Any]) -> dict[tuple[Any, ...], float]:
        key = RunConfig.model_validate(config).model_dump_json()
        if key not in cache:
            context = multiprocessing.get_context("fork")
            results = context.Queue()
            child = context.Process(target=_uninterrupted, args=(config, engine_cache, results))
            child.start()
            metrics = results.get(timeout=600)
            child.join(timeout=30)
            assert child.exitcode == 0 and isinstance(metrics, dict), metrics
            cache[key] = metrics
        return cache[key]

    yield metrics_of


def _uninterrupted(config: dict[str, Any], cache: Path, results: Any) -> None:
    os.environ["TAPFL_CACHE_DIR"] = str(cache)
    try:
        events: list[Any] = []
        with tempfile.TemporaryDirectory() as workdir:
            result = runner.run(RunConfig.model_validate(config), events.append, Path(workdir))
        assert result.status == "succeeded"
        results.put({_metric_key(e): e.value for e in events if isinstance(e, Evaluation)})
    except BaseException as exc:
        results.put(repr(exc))
        raise


def _metric_key(row: Any) -> tuple[Any, ...]:
    fields = ("stage", "round", "client", "task", "model", "split", "metric")
    if isinstance(row, dict):
        return tuple(row[f] for f in fields)
    return tuple(getattr(row, f) for f in fields)


def _assert_metrics_as_uninterrupted(cluster: Cluster, run: dict[str, Any], reference: Any) -> None:
    page = cluster.request("GET", f"/runs/{run['id']}/metrics", params={"limit": 100_000}).json()
    stored = {_metric_key(row): row["value"] for row in page["items"]}
    # No metric row duplicated: as many rows in SQL as distinct keys, for the whole run.
    [(rows,)] = cluster.sql("SELECT COUNT(*) FROM metrics WHERE run_id = :id", id=run["id"])
    assert rows == page["total"] == len(stored)
    expected = reference(run["config"])
    assert set(stored) == set(expected), "rounds or clients missing or extra"
    assert stored == expected  # bit for bit: the resumed run ends where an uninterrupted one does


def _transitions(run: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(t["from_status"], t["to_status"]) for t in run["transitions"]]


def _messages(cluster: Cluster, run_id: int) -> list[str]:
    return [line["message"] for line in cluster.logs_of(run_id)]


def _in_round(at_least: int) -> Any:
    return lambda r: r["status"] == "running" and r["stage"] == "fl" and r["round"] >= at_least


def test_a_worker_killed_mid_run_is_replaced_and_the_run_ends_as_if_uninterrupted(
    cluster: Cluster, reference: Any
) -> None:
    cluster.start_worker("w1")
    [run] = cluster.submit(LONG)["runs"]
    cluster.wait_for(run["id"], _in_round(3), "reached round 3")
    cluster.kill_worker("w1")  # SIGKILL, worker and pool process: the machine is gone
    cluster.start_worker("w2")

    run = cluster.wait_done(run["id"])
    assert run["status"] == "succeeded", f"{run['error']}{cluster.dump()}"
    assert run["attempt"] == 2 and run["worker"].startswith("w2@")
    assert _transitions(run) == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "queued"),
        ("queued", "running"),
        ("running", "succeeded"),
    ]
    # The reconciler saw it: the dead process here (the API shares the machine), else silence.
    lost = run["transitions"][2]["reason"]
    assert "w1@" in lost and ("is gone" in lost or "no heartbeat" in lost), lost
    assert any(
        m.startswith("engine started resuming after round") for m in _messages(cluster, run["id"])
    )
    _assert_metrics_as_uninterrupted(cluster, run, reference)


def test_a_killed_run_process_and_a_worker_shutdown_cost_the_run_one_round_at_most(
    cluster_without_reconciler: Cluster, reference: Any
) -> None:
    cluster = cluster_without_reconciler
    cluster.start_worker("w1")
    [run] = cluster.submit(LONG)["runs"]
    run = cluster.wait_for(run["id"], _in_round(2), "reached round 2")

    # Out of memory: the kernel kills the process that runs the run, not the worker.
    [pool] = cluster.pool_pids("w1")
    os.kill(pool, signal.SIGKILL)
    resumed = cluster.wait_for(run["id"], lambda r: r["attempt"] == 2, "was taken up again", 60)
    # The same worker got the message back at once; its process's death was evident.
    assert "is gone" in resumed["transitions"][-1]["reason"]

    # The worker is asked to stop (deploy, reboot): the run goes back to the queue at once.
    cluster.wait_for(run["id"], _in_round(run["round"] + 1), "went on", 120)
    cluster.workers["w1"].send_signal(signal.SIGTERM)
    cluster.workers.pop("w1").wait(timeout=120)
    queued = cluster.run(run["id"])
    # It did not wait for the run to end: the run is back in the queue, rounds to go.
    assert queued["status"] == "queued" and queued["round"] < queued["total_rounds"], queued
    assert "is shutting down" in queued["transitions"][-1]["reason"]

    cluster.start_worker("w2")
    run = cluster.wait_done(run["id"])
    assert run["status"] == "succeeded", f"{run['error']}{cluster.dump()}"
    assert run["attempt"] == 3
    _assert_metrics_as_uninterrupted(cluster, run, reference)


def test_cancel_stops_a_running_run_within_a_step_and_the_worker_takes_the_next(
    cluster: Cluster,
) -> None:
    cluster.start_worker("w1")
    overrides = quick(rounds=3, local_steps=20)
    [long] = cluster.submit(overrides)["runs"]
    [queued_next] = cluster.submit(SHORT)["runs"]
    live = cluster.wait_for(long["id"], _in_round(2), "reached round 2")

    # Progress while it runs: stage, round of total, ETA, each client's training losses.
    assert live["total_rounds"] == 3 and 0 < live["progress"] < 1 and live["eta_s"] > 0
    assert {x["client"] for x in live["latest_losses"]} and all(
        x["loss"] > 0 for x in live["latest_losses"]
    )
    # The log lines of the rounds so far (the worker writes them once a second).
    deadline = time.monotonic() + 10
    while not any(x["message"].startswith("round 2/3") for x in cluster.logs_of(long["id"])):
        assert time.monotonic() < deadline, cluster.logs_of(long["id"])
        time.sleep(0.1)
    lines = cluster.logs_of(long["id"])
    rounds = {
        int(line["message"].split()[1].split("/")[0]): datetime.fromisoformat(line["time"])
        for line in lines
        if line["message"].startswith("round ") and "/3: clients" in line["message"]
    }
    assert set(rounds) >= {1, 2}
    # Seconds per local step, measured on this machine now (evaluation time included: generous).
    step_s = (rounds[2] - rounds[1]).total_seconds() / overrides["local_steps"]  # type: ignore[operator]

    asked = time.monotonic()
    response = cluster.request("POST", f"/runs/{long['id']}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelling"
    cancelled = cluster.wait_for(
        long["id"], lambda r: r["status"] == "cancelled", "cancelled", 60, 0.05
    )
    took = time.monotonic() - asked
    print(f"cancel: cancelled {took:.2f} s after the request; a local step takes {step_s:.2f} s")
    assert took <= step_s + 10, f"cancel took {took:.1f} s; a local step takes {step_s:.2f} s"
    assert _transitions(cancelled)[-2:] == [("running", "cancelling"), ("cancelling", "cancelled")]

    # A consistent checkpoint: the last completed round's, loadable, and what a retry resumes.
    checkpoint = latest_checkpoint(cluster.home / "runs" / str(long["id"]))
    assert checkpoint is not None and checkpoint["completed_rounds"] == cancelled["round"] - 1

    nxt = cluster.wait_done(queued_next["id"])
    assert nxt["status"] == "succeeded", f"{nxt['error']}{cluster.dump()}"
    assert nxt["started_at"] >= cancelled["finished_at"]  # ISO times in UTC sort as text

    retried = cluster.request("POST", f"/runs/{long['id']}/retry").json()
    assert retried["status"] == "queued"
    done = cluster.wait_done(long["id"])
    assert done["status"] == "succeeded", f"{done['error']}{cluster.dump()}"
    resumed = f"engine started resuming after round {checkpoint['completed_rounds']}"
    assert any(m.startswith(resumed) for m in _messages(cluster, long["id"]))


@pytest.mark.parametrize("keeps_data", [True, False], ids=["keeps-its-data", "lost-its-data"])
def test_runs_queued_across_a_redis_restart_all_complete_once(
    cluster: Cluster, keeps_data: bool
) -> None:
    cluster.start_worker("w1")
    ids = [r["id"] for r in cluster.submit(SHORT, sweep={"seed": [1, 2, 3]})["runs"]]
    cluster.wait_for(ids[0], lambda r: r["status"] == "running", "started")

    cluster.stop_redis()
    during = cluster.submit(SHORT)["runs"][0]  # Redis is down: stored and kept queued
    assert during["status"] == "queued"
    assert "run queue is unreachable" in _messages(cluster, during["id"])[-1]
    pending = CeleryRunQueue(cluster.redis_url)
    if keeps_data:  # a restart: the messages of the queued runs are back (AOF)
        cluster.start_redis()
        assert set(ids[1:]) <= (pending.pending_run_ids() or set())
    else:  # a new, empty Redis (or a flush): every message is gone
        cluster.start_redis(datadir="redis-after")
        assert pending.pending_run_ids() == set()

    for run_id in [*ids, during["id"]]:
        run = cluster.wait_done(run_id)
        assert run["status"] == "succeeded", f"run {run_id}: {run['error']}{cluster.dump()}"
        assert run["attempt"] == 1  # each ran once: re-sent messages were not run twice
    [(count,)] = cluster.sql("SELECT COUNT(*) FROM runs")
    assert count == 4


def test_fifty_experiments_submitted_at_once_are_all_stored_and_queued_once(
    cluster: Cluster,
) -> None:
    # No worker: the queue keeps what the API sent, so the test can count it.
    def submit(i: int) -> dict[str, Any]:
        return cluster.submit(SHORT, name=f"concurrent-{i}")

    began = time.monotonic()
    with ThreadPoolExecutor(50) as pool:
        experiments = list(pool.map(submit, range(50)))
    print(f"50 concurrent submissions answered in {time.monotonic() - began:.2f} s")
    run_ids = [e["runs"][0]["id"] for e in experiments]
    assert len({e["id"] for e in experiments}) == 50 and len(set(run_ids)) == 50

    listed = cluster.request("GET", "/experiments", params={"limit": 100}).json()
    assert listed["total"] == 50
    assert sorted(e["name"] for e in listed["items"]) == sorted(
        f"concurrent-{i}" for i in range(50)
    )
    runs = cluster.request("GET", "/runs", params={"limit": 100, "status": "queued"}).json()
    assert sorted(r["id"] for r in runs["items"]) == sorted(run_ids)
    assert sorted(queue_contents(cluster.redis_url)) == sorted(run_ids)  # each exactly once

    # A reconciler turn that takes every queued run as sent long ago (resend after 1 ms) finds
    # each one's message in Redis and sends none again.
    turn = subprocess.run(
        tapfl_command("reconcile"),
        env={**cluster.env, "TAPFL_RESEND_AFTER_S": "0.001"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert turn.returncode == 0, turn.stderr
    assert "re-sent []" in turn.stdout, turn.stdout
    assert sorted(queue_contents(cluster.redis_url)) == sorted(run_ids)


def test_a_run_whose_data_cannot_load_fails_readably_and_the_worker_goes_on(
    cluster: Cluster,
) -> None:
    cluster.start_worker("w1")
    broken = cluster.submit(
        {
            **SHORT,
            "scenario.datasets.digits.source": "disk",
            "scenario.datasets.digits.name": "/nonexistent/digits",
        }
    )["runs"][0]
    healthy = cluster.submit(SHORT)["runs"][0]

    broken = cluster.wait_done(broken["id"])
    assert broken["status"] == "failed", cluster.dump()
    reason = broken["error"].splitlines()[0]
    assert "/nonexistent/digits" in reason and "Traceback" in broken["error"]
    errors = [x for x in cluster.logs_of(broken["id"]) if x["level"] == "ERROR"]
    assert errors and "/nonexistent/digits" in errors[-1]["message"]

    healthy = cluster.wait_done(healthy["id"])
    assert healthy["status"] == "succeeded", f"{healthy['error']}{cluster.dump()}"
    assert cluster.workers["w1"].poll() is None


def test_a_run_at_the_smallest_time_limit_fails_saying_so_and_is_never_queued_again(
    cluster: Cluster,
) -> None:
    cluster.start_worker("w1")
    overrides = quick(rounds=10_000, local_steps=20)  # far more than fits in the limit
    [run] = cluster.submit(overrides, time_limit_s=MIN_RUN_TIME_LIMIT_S)["runs"]
    run = cluster.wait_done(run["id"], timeout=120)
    assert run["status"] == "failed", cluster.dump()
    limit = f"{MIN_RUN_TIME_LIMIT_S:.0f} s"
    assert run["error"].startswith(f"time limit reached: the attempt ran for its {limit} limit")
    assert run["round"] < run["total_rounds"]  # stopped by the limit, not by the end

    # A reconciler turn that takes every message as lost long ago sends nothing: the run
    # stays failed, after its one attempt, and no message of it waits in the broker.
    turn = subprocess.run(
        tapfl_command("reconcile"),
        env={**cluster.env, "TAPFL_RESEND_AFTER_S": "0.001"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert turn.returncode == 0, turn.stderr
    run = cluster.run(run["id"])
    assert (run["status"], run["attempt"]) == ("failed", 1)
    assert [t["to_status"] for t in run["transitions"]] == ["queued", "running", "failed"]
    assert queue_contents(cluster.redis_url) == []
