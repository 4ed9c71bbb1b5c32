"""Runs with real results in a live API's database, for the dashboard tests.

Runs are submitted through the API (``POST /experiments``); with no worker they stay queued.
``run_with_worker`` then runs one the way a Celery worker does (``worker.tasks.execute``:
claim, the engine with its SQL observer and log capture, the recorded outcome), against the
server's database, in this process. Runs in other states are moved there by the same
backend service calls a worker makes (claim, report progress, fail, finish).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from backend.models import RunStatus
from backend.services import runs
from backend.services.events import record_event
from backend.settings import get_settings
from tap_engine import events as ev
from tests.engine.conftest import SMALL
from tests.live_api import LiveApi

# The engine tests' small run, two rounds: FL rounds, evaluations, replacements, stage 2.
TINY = {**SMALL, "rounds": 2}
HEARTBEAT_TIMEOUT_S = 120.0  # the server's default: what a claim is checked against
OOM = "RuntimeError: CUDA out of memory"


def submit(api: LiveApi, name: str, preset: str = "demo", **body: Any) -> dict[str, Any]:
    """A new experiment through the API; its runs stay queued."""
    return api.call("POST", "/experiments", json={"name": name, "preset": preset, **body})


def run_ids(experiment: dict[str, Any]) -> list[int]:
    return [run["id"] for run in experiment["runs"]]


def run_with_worker(api: LiveApi, run_id: int) -> str:
    """Run a queued run to its end as a worker would; returns how it ended."""
    from worker import tasks  # the Celery app is only built for the tests that need it

    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith("TAPFL_")]:
            patch.delenv(name)
        patch.setenv("TAPFL_HOME", str(api.home))
        patch.setenv("TAPFL_DATABASE_URL", api.database_url)
        # Set here so that the values the task exports for the engine are undone afterwards.
        patch.setenv("TAPFL_CACHE_DIR", str(api.home / "cache"))
        patch.setenv("TAPFL_RUN_GROUP", "")
        get_settings.cache_clear()
        try:
            return tasks.execute(run_id, node="test-worker")
        finally:
            get_settings.cache_clear()


def claim(api: LiveApi, run_id: int, worker: str = "w1") -> int:
    """Take a queued run as worker ``worker`` (this process); returns the attempt."""
    with api.sessions()() as session:
        run = runs.claim_run(
            session,
            run_id,
            runs.Owner.current(worker),
            task_id=f"task-{run_id}",
            heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S,
            max_recoveries=3,
        )
        assert run is not None, f"run {run_id} could not be claimed"
        return run.attempt


def record(api: LiveApi, run_id: int, attempt: int, events: Iterable[ev.Event]) -> None:
    """Store engine events as the worker's SQL observer does (in one transaction)."""
    with api.sessions()() as session:
        for event in events:
            record_event(session, run_id, event, attempt)
        session.commit()


def progress(round_: int, total: int, fraction: float, eta_s: float | None) -> ev.Progress:
    return ev.Progress(
        stage="fl",
        round=round_,
        total_rounds=total,
        fraction=fraction,
        elapsed_s=10.0,
        eta_s=eta_s,
    )


def attempt_of(api: LiveApi, run_id: int) -> int:
    return int(api.call("GET", f"/runs/{run_id}")["attempt"])


def fail(api: LiveApi, run_id: int, attempt: int, error: str = OOM) -> None:
    with api.sessions()() as session:
        assert runs.fail_run(session, run_id, attempt, error)


def finish(api: LiveApi, run_id: int, attempt: int, rounds: int) -> None:
    with api.sessions()() as session:
        assert runs.finish_run(session, run_id, attempt, RunStatus.SUCCEEDED, rounds)


def make_running(api: LiveApi, name: str) -> int:
    """A run half-way through its two rounds, 95 s to go."""
    [run_id] = run_ids(submit(api, name, overrides={"rounds": 2}))
    attempt = claim(api, run_id)
    record(api, run_id, attempt, [progress(1, 2, 0.5, 95.0)])
    return run_id


def make_failed(api: LiveApi, name: str) -> int:
    """A run that failed in its first round."""
    [run_id] = run_ids(submit(api, name, overrides={"rounds": 2}))
    attempt = claim(api, run_id)
    record(api, run_id, attempt, [progress(1, 2, 0.25, 120.0)])
    fail(api, run_id, attempt)
    return run_id


@dataclass(frozen=True)
class States:
    """One experiment ("states"), one run in each state; ids ascending = created order."""

    running: int
    failed: int
    cancelled: int
    queued: int


def make_states(api: LiveApi) -> States:
    ids = run_ids(submit(api, "states", overrides={"rounds": 2}, sweep={"seed": [1, 2, 3, 4]}))
    running, failed, cancelled, queued = ids
    attempt = claim(api, running)
    record(api, running, attempt, [progress(1, 2, 0.5, 95.0)])
    attempt = claim(api, failed)
    record(api, failed, attempt, [progress(1, 2, 0.25, 120.0)])
    fail(api, failed, attempt)
    api.call("POST", f"/runs/{cancelled}/cancel")
    return States(running, failed, cancelled, queued)


@dataclass(frozen=True)
class Sweep:
    """A finished sweep of real engine runs: TAP and FedAvg, two seeds each."""

    group_id: str
    tap: list[int]
    fedavg: list[int]

    @property
    def run_ids(self) -> list[int]:
        return sorted([*self.tap, *self.fedavg])


def make_sweep(api: LiveApi) -> Sweep:
    experiment = submit(
        api, "curves", overrides=TINY, sweep={"algorithm": ["tap", "fedavg"], "seed": [1, 2]}
    )
    for run_id in run_ids(experiment):
        outcome = run_with_worker(api, run_id)
        assert outcome == "succeeded", api.call("GET", f"/runs/{run_id}").get("error")
    by_algorithm: dict[str, list[int]] = {}
    for run in experiment["runs"]:
        by_algorithm.setdefault(run["algorithm"], []).append(run["id"])
    group = api.call("GET", f"/runs/{experiment['runs'][0]['id']}")["group_id"]
    return Sweep(group, by_algorithm["tap"], by_algorithm["fedavg"])


LARGE_CLIENTS, LARGE_ROUNDS = 30, 10
CLASSIFY, GENERATE = "digits_image_classification", "digits_image_generation"


def large_client_tasks() -> dict[int, list[str]]:
    """Every third client holds a second (generation) task."""
    return {c: [CLASSIFY, GENERATE] if c % 3 == 1 else [CLASSIFY] for c in range(LARGE_CLIENTS)}


def evaluation(
    round_: int, client: int, task: str, model: str, split: str, metric: str, value: float
) -> ev.Evaluation:
    return ev.Evaluation(
        round=round_,
        stage="fl",
        client=client,
        task=task,
        model=model,
        split=split,
        metric=metric,
        value=value,
        n=50,
    )


def make_large_run(api: LiveApi) -> int:
    """A finished run of 30 clients, evaluated every round: the dashboard's load test.
    Its events are what a 30-client engine run reports, written as the observer does."""
    overrides = {"rounds": LARGE_ROUNDS, "eval_every": 1}
    [run_id] = run_ids(submit(api, "large", overrides=overrides))
    attempt = claim(api, run_id)
    metrics = {CLASSIFY: ("accuracy", "loss"), GENERATE: ("mse", "loss")}
    events: list[ev.Event] = []
    for client, tasks in large_client_tasks().items():
        for r in range(1, LARGE_ROUNDS + 1):
            losses = {task: 2.0 / r for task in tasks}
            events.append(
                ev.LocalTraining(round=r, client=client, model="personal", steps=10, losses=losses)
            )
            events += [
                evaluation(r, client, task, model, split, metric, 0.5 + 0.01 * r)
                for task in tasks
                for metric in metrics[task]
                for model in ("global", "personal")
                for split in ("local", "pooled")
            ]
    record(api, run_id, attempt, events)
    finish(api, run_id, attempt, rounds=LARGE_ROUNDS)
    return run_id


@dataclass(frozen=True)
class PairsSweep:
    """A tiny sweep over ``pairs`` (M=1 and M=2, TAP, one seed, two rounds), run for real."""

    group: str
    by_pairs: dict[int, int]  # M -> run id


def make_pairs_sweep(api: LiveApi, name: str = "pairs study") -> PairsSweep:
    experiment = submit(
        api, name, overrides={**TINY, "algorithm": "tap", "seed": 1}, sweep={"pairs": [1, 2]}
    )
    by_pairs = {}
    for run in experiment["runs"]:
        outcome = run_with_worker(api, run["id"])
        assert outcome == "succeeded", api.call("GET", f"/runs/{run['id']}").get("error")
        by_pairs[int(run["sweep"]["pairs"])] = run["id"]
    group = api.call("GET", f"/runs/{experiment['runs'][0]['id']}")["group_id"]
    return PairsSweep(group, by_pairs)
