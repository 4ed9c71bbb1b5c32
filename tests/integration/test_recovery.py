"""Recovering from a Redis crash, and stale messages, against real processes: `tapfl up`
(its Redis killed mid-run), and a cluster (redis-server, the API with its reconciler, Celery
worker processes) whose Redis and workers the tests kill and restart."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from celery import Celery

from backend.processes import stop_process
from backend.queue import CeleryRunQueue, celery_config
from tests.conftest import start_embedded_stack
from tests.integration.cluster import TERMINAL, Cluster, make_cluster, quick

pytestmark = pytest.mark.integration

LONG = quick(rounds=6)  # several rounds, to be hit in the middle
SHORT = quick(rounds=1, local_steps=1)
DROPPED = "message dropped before starting a process"


@pytest.fixture(scope="module")
def engine_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("engine-cache")


@pytest.fixture
def cluster(tmp_path: Path, engine_cache: Path) -> Iterator[Cluster]:
    cluster = make_cluster(tmp_path / "home", engine_cache)
    try:
        cluster.start_redis()
        cluster.start_api()
        yield cluster
    finally:
        cluster.stop()


def _in_round(at_least: int) -> Any:
    return lambda r: r["status"] == "running" and r["stage"] == "fl" and r["round"] >= at_least


def _assert_metrics_complete_and_unique(database: Path, run: dict[str, Any]) -> None:
    """Every client's evaluation of every evaluated round is stored, each exactly once."""
    with sqlite3.connect(database) as db:
        key = "stage, round, client, task, model, split, metric"
        repeated = db.execute(
            f"SELECT {key}, COUNT(*) FROM metrics WHERE run_id = ? "
            f"GROUP BY {key} HAVING COUNT(*) > 1",
            (run["id"],),
        ).fetchall()
        evaluated = db.execute(
            "SELECT DISTINCT client, round FROM metrics WHERE run_id = ? AND stage = 'fl'",
            (run["id"],),
        ).fetchall()
    assert repeated == []
    config = run["config"]
    clients = range(len(config["scenario"]["clients"]))
    rounds = range(config["eval_every"], config["rounds"] + 1, config["eval_every"])
    assert set(evaluated) == {(c, r) for c in clients for r in rounds}


# --- tapfl up ------------------------------------------------------------------------


def test_tapfl_up_starts_a_killed_redis_again_and_the_run_in_flight_finishes(
    tmp_path: Path,
) -> None:
    stack = start_embedded_stack(tmp_path / "var")
    headers = {"Authorization": f"Bearer {stack.token}"}

    def call(method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(
            method, f"{stack.api_url}/api/v1{path}", headers=headers, timeout=30, **kwargs
        )
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text}"
        return response.json()

    def wait_for(run_id: int, done: Any, what: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not done(run := call("GET", f"/runs/{run_id}")):
            assert time.monotonic() < deadline, f"run {run_id} never {what}: {run}"
            time.sleep(0.3)
        return run

    try:
        body = {"preset": "demo", "algorithm": "fedavg", "overrides": LONG}
        [run] = call("POST", "/experiments", json=body)["runs"]
        wait_for(run["id"], _in_round(2), "reached round 2", 300)
        state = json.loads((stack.home / "stack.json").read_text())
        os.kill(state["children"]["redis"], signal.SIGKILL)

        deadline = time.monotonic() + 30
        while (
            json.loads((stack.home / "stack.json").read_text())["children"]["redis"]
            == (state["children"]["redis"])
        ):
            assert time.monotonic() < deadline, f"Redis was not started again:{stack.output()}"
            time.sleep(0.2)
        assert redis.Redis.from_url(state["redis_url"]).ping()
        assert call("GET", "/health")["redis"] is True

        run = wait_for(run["id"], lambda r: r["status"] in TERMINAL, "ended", 300)
        assert run["status"] == "succeeded", f"{run['error']}{stack.output()}"
        assert stack.proc.poll() is None, stack.output()  # the stack kept serving
        assert "redis exited with code" in stack.output()
        _assert_metrics_complete_and_unique(stack.home / "tapfl.db", run)

        # The worker still takes new runs from the restarted Redis.
        body["overrides"] = SHORT
        [after] = call("POST", "/experiments", json=body)["runs"]
        after = wait_for(after["id"], lambda r: r["status"] in TERMINAL, "ended", 300)
        assert after["status"] == "succeeded", f"{after['error']}{stack.output()}"
    finally:
        assert stack.stop() == 0, stack.output()


# --- a run stranded by a Redis crash -----------------------------------------------------


def test_a_run_stranded_by_a_redis_crash_is_sent_again_and_cancel_then_retry_frees_it(
    cluster: Cluster,
) -> None:
    cluster.start_worker("w1")
    [run] = cluster.submit(LONG)["runs"]
    cluster.wait_for(run["id"], _in_round(2), "reached round 2")

    # Redis dies, then the worker is stopped (as `tapfl up` used to stop everything): the
    # run goes back to the queue in SQL, but the message stays unacknowledged in Redis's
    # append-only file, and no worker will ever acknowledge it.
    assert cluster.redis is not None
    cluster.redis.send_signal(signal.SIGKILL)
    cluster.redis.wait(timeout=10)
    cluster.redis = None
    stop_process(cluster.workers.pop("w1"), timeout=90)
    assert cluster.run(run["id"])["status"] == "queued", cluster.dump()
    cluster.start_redis()
    broker = redis.Redis.from_url(cluster.redis_url)
    assert broker.hlen("unacked") == 1 and broker.llen("cpu") == 0  # stranded

    restarted = time.monotonic()
    resent = cluster.wait_for(
        run["id"],
        lambda r: any("no live message" in m for m in _messages(cluster, r["id"])),
        "was sent again",
        timeout=60,
    )
    print(f"\nstranded run sent again {time.monotonic() - restarted:.1f} s after Redis restarted")
    assert resent["status"] == "queued" and broker.llen("cpu") == 1

    cancelled = cluster.request("POST", f"/runs/{run['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"
    retried = cluster.request("POST", f"/runs/{run['id']}/retry").json()
    assert retried["status"] == "queued"

    cluster.start_worker("w2")
    done = cluster.wait_done(run["id"])
    assert done["status"] == "succeeded", f"{done['error']}{cluster.dump()}"
    assert done["worker"].startswith("w2@")
    _assert_metrics_complete_and_unique(cluster.home / "tapfl.db", done)


def _messages(cluster: Cluster, run_id: int) -> list[str]:
    return [line["message"] for line in cluster.logs_of(run_id)]


# --- stale messages ----------------------------------------------------------------------


def test_five_hundred_stale_messages_start_no_process_and_the_next_run_goes_first(
    cluster: Cluster,
) -> None:
    name = f"w1@{socket.gethostname()}"
    cluster.start_worker("w1", queues="gpu")  # not on the cpu queue yet: it fills first
    _wait_for_log(cluster.logs / "w1.log", "ready.", timeout=120)

    sweep = cluster.submit(SHORT, sweep={"seed": [1, 2, 3, 4, 5]})["runs"]
    for run in sweep:
        assert cluster.request("POST", f"/runs/{run['id']}/cancel").json()["status"] == (
            "cancelled"
        )
    queue = CeleryRunQueue(cluster.redis_url)
    for i in range(500 - len(sweep)):  # one message each was sent on submission
        queue.enqueue(sweep[i % len(sweep)]["id"], "cpu", 60, 90)
    [real] = cluster.submit(SHORT)["runs"]
    broker = redis.Redis.from_url(cluster.redis_url)
    assert broker.llen("cpu") == 501

    control = Celery("tests-control", set_as_current=False)
    control.conf.update(celery_config(cluster.redis_url))
    began = time.monotonic()
    replies = control.control.add_consumer("cpu", destination=[name], reply=True, timeout=10)
    assert replies, "the worker did not answer add_consumer"
    claimed = cluster.wait_for(real["id"], lambda r: r["claimed_at"] is not None, "claimed")
    waited = time.monotonic() - began
    done = cluster.wait_done(real["id"])
    assert done["status"] == "succeeded", f"{done['error']}{cluster.dump()}"
    print(f"\n500 stale messages, then a run: claimed {waited:.2f} s after the worker listened")

    log = (cluster.logs / "w1.log").read_text(errors="replace")
    dropped = [line for line in log.splitlines() if DROPPED in line]
    assert len(dropped) == 500, cluster.dump()
    assert all("MainProcess" in line for line in dropped)  # decided before any pool process
    assert {int(re.search(r"run (\d+):", line)[1]) for line in dropped} == {  # type: ignore[index]
        r["id"] for r in sweep
    }
    # Only the real run was handed on (Celery logs "received" as it does so), after every
    # stale message was dropped, and no run process ever saw a stale one.
    received = [m.start() for m in re.finditer(r"Task tapfl\.run\[[^\]]+\] received", log)]
    assert len(received) == 1 and received[0] > log.index(dropped[-1])
    assert "skipped" not in log
    assert claimed["id"] == real["id"]


def _wait_for_log(path: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and text in path.read_text(errors="replace")):
        assert time.monotonic() < deadline, f"{path.name} never said {text!r}"
        time.sleep(0.2)
