"""How fast the API serves a large run's metrics, over real HTTP (uvicorn) on SQLite.

Inserts the metric rows of a 30-client x 200-round run (two tasks per client: a
classification task with accuracy and loss, a text-generation task with loss, perplexity
and token accuracy; models global and personal; splits local and pooled; every round
evaluated; plus the post-FL rows), then times:

- one client's metrics (all its series), and one series of one client (filtered);
- the whole run as JSON;
- the whole run as CSV.

    PYTHONPATH=. python benchmarks/api_metrics.py [--clients 30] [--rounds 200] [--repeat 5]

Targets (issue 6): one client filtered < 100 ms, whole run < 1 s, CSV < 2 s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
from sqlalchemy import insert

from backend.db import session_factory, upgrade_database
from backend.models import Experiment, Metric, Run, RunStatus
from backend.processes import free_port
from backend.services import users
from tap_engine.config import resolve_config

TASKS = {"vqa": ("accuracy", "loss"), "caption": ("loss", "perplexity", "token_accuracy")}


def metric_rows(run_id: int, clients: int, rounds: int) -> Iterator[dict[str, object]]:
    models = {"fl": ("global", "personal"), "post": ("global", "global_ft", "final")}
    for stage, kinds in models.items():
        stage_rounds = range(1, rounds + 1) if stage == "fl" else [rounds]
        for rnd in stage_rounds:
            for client in range(clients):
                for task, metrics in TASKS.items():
                    for model in kinds:
                        for split in ("local", "pooled"):
                            for i, metric in enumerate(metrics):
                                value = (client + rnd / rounds + i) % 1.0
                                yield {
                                    "run_id": run_id,
                                    "round": rnd,
                                    "stage": stage,
                                    "client": client,
                                    "task": task,
                                    "model": model,
                                    "split": split,
                                    "metric": metric,
                                    "value": value,
                                    "n": 64,
                                }


def populate(url: str, clients: int, rounds: int) -> tuple[int, str, int]:
    """A user, an experiment and a succeeded run with its rows; (run id, token, rows)."""
    upgrade_database(url)
    with session_factory(url)() as session:
        user, token = users.create(session, "bench", is_admin=True)
        config = resolve_config("demo", overrides={"rounds": rounds})
        experiment = Experiment(name="bench", preset="demo", owner=user, spec={})
        run = Run(
            experiment=experiment,
            algorithm="tap",
            seed=1,
            group_id="bench",
            config=config.model_dump(mode="json"),
            status=RunStatus.SUCCEEDED,
            total_rounds=rounds,
        )
        session.add(run)
        session.commit()
        rows = list(metric_rows(run.id, clients, rounds))
        for start in range(0, len(rows), 20_000):
            session.execute(insert(Metric), rows[start : start + 20_000])
        session.commit()
        return run.id, token, len(rows)


def timed(call: Callable[[], httpx.Response], repeat: int) -> tuple[float, float, int, int]:
    """(median ms, best ms, rows in the answer, bytes) over ``repeat`` calls after a warm-up."""
    call()
    times, response = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        response = call()
        times.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
    assert response is not None
    if response.headers["content-type"].startswith("text/csv"):
        rows = response.text.count("\n") - 1
    else:
        rows = len(response.json()["items"])
    return statistics.median(times), min(times), rows, len(response.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="tapfl-bench-"))
    url = f"sqlite:///{home / 'tapfl.db'}"
    start = time.perf_counter()
    run_id, token, n_rows = populate(url, args.clients, args.rounds)
    print(
        f"inserted {n_rows:,} metric rows ({args.clients} clients x {args.rounds} rounds) "
        f"in {time.perf_counter() - start:.1f} s"
    )

    port = free_port()
    redis = f"redis://127.0.0.1:{free_port()}/0"  # not needed to read results
    env = {
        **os.environ,
        "TAPFL_HOME": str(home),
        "TAPFL_DATABASE_URL": url,
        "TAPFL_RECONCILE_INTERVAL_S": "0",
        "TAPFL_REDIS_URL": redis,
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "backend.main:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}/api/v1"
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60
        ) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if client.get("/openapi.json").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the API did not start")
                time.sleep(0.2)
            metrics = f"/runs/{run_id}/metrics"
            one_series = {
                "client": 7,
                "task": "vqa",
                "model": "personal",
                "split": "local",
                "metric": "accuracy",
            }
            cases = [
                ("one client, one series", 100, lambda: client.get(metrics, params=one_series)),
                ("one client, all series", 100, lambda: client.get(metrics, params={"client": 7})),
                ("whole run, JSON", 1000, lambda: client.get(metrics, params={"limit": 1_000_000})),
                ("whole run, CSV", 2000, lambda: client.get(f"{metrics}.csv")),
            ]
            print(
                f"{'query':<24} {'rows':>8} {'bytes':>11} {'median ms':>10} {'best ms':>8} "
                f"{'target ms':>10}"
            )
            for name, target, call in cases:
                median, best, rows, size = timed(call, args.repeat)
                verdict = "ok" if median < target else "SLOW"
                print(
                    f"{name:<24} {rows:>8,} {size:>11,} {median:>10.1f} {best:>8.1f} "
                    f"{target:>10} {verdict}"
                )
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cpus; python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.platform()}"
    )


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
