"""Shared fixtures. ``embedded_stack`` runs the real ``tapfl up`` (Redis, uvicorn, a Celery
worker process, Streamlit) on free loopback ports with its state in a temporary folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backend.processes import free_port

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@dataclass
class EmbeddedStack:
    home: Path
    api_url: str
    dashboard_url: str
    token: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 90) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        return self.proc.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def clean_env(**extra: str) -> dict[str, str]:
    """The test process's environment without any TAPFL_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAPFL_")}
    env.update(extra, PYTHONUNBUFFERED="1")
    return env


def tapfl_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tap_engine.cli", *args]


def start_embedded_stack(home: Path, *args: str, timeout: float = 180) -> EmbeddedStack:
    home.mkdir(parents=True, exist_ok=True)
    log = home / "tapfl-up.log"
    ports = [free_port() for _ in range(3)]
    command = tapfl_command(
        "up",
        "--home",
        str(home),
        "--api-port",
        str(ports[0]),
        "--dashboard-port",
        str(ports[1]),
        "--redis-port",
        str(ports[2]),
        *args,
    )
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=clean_env(), start_new_session=True
        )
    state_file = home / "stack.json"
    deadline = time.monotonic() + timeout
    while not state_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"tapfl up did not come up:\n{log.read_text(errors='replace')}")
        time.sleep(0.3)
    state = json.loads(state_file.read_text())
    token = (home / "token").read_text().strip()
    return EmbeddedStack(home, state["api_url"], state["dashboard_url"], token, proc, log)


@pytest.fixture(scope="session")
def embedded_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    stack = start_embedded_stack(tmp_path_factory.mktemp("stack") / "var")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
