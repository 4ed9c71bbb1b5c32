"""``tapfl up`` for real: bundled redis-server, uvicorn, a Celery worker process, Streamlit."""

from __future__ import annotations

import os
import socket
import subprocess

import httpx
import pytest
from sqlalchemy import create_engine, text

from backend.processes import LOOPBACK, free_port
from tap_engine.config import resolve_config
from tests.conftest import clean_env, start_embedded_stack, tapfl_command

pytestmark = pytest.mark.integration


def test_up_demo_runs_the_demo_to_success_and_stores_every_clients_evaluations(tmp_path):
    home = tmp_path / "var"
    ports = [str(free_port()) for _ in range(3)]
    proc = subprocess.run(
        tapfl_command(
            "up",
            "--demo",
            "--exit-when-done",
            "--set",
            "rounds=4",  # the full demo's duration is measured outside the test suite
            "--set",
            "local_steps=5",
            "--set",
            "post_iterations=5",
            "--home",
            str(home),
            "--api-port",
            ports[0],
            "--dashboard-port",
            ports[1],
            "--redis-port",
            ports[2],
        ),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr + _logs(home)
    assert "succeeded" in proc.stdout
    assert f"http://{LOOPBACK}:{ports[0]}" in proc.stdout  # prints the URLs
    assert (home / "token").read_text().strip() in proc.stdout  # and the token

    demo = resolve_config("demo")
    engine = create_engine(f"sqlite:///{home / 'tapfl.db'}")
    with engine.connect() as db:
        rows = db.execute(text("SELECT DISTINCT client, round FROM metrics")).all()
    rounds_by_client: dict[int, set[int]] = {}
    for client, round_no in rows:
        rounds_by_client.setdefault(client, set()).add(round_no)
    assert set(rounds_by_client) == set(range(len(demo.scenario.clients)))
    expected = set(range(demo.eval_every, 4 + 1, demo.eval_every))  # the test's 4 rounds
    assert all(rounds == expected for rounds in rounds_by_client.values())
    assert not (home / "stack.json").exists()  # a clean shutdown removes its state file


def test_a_busy_port_is_refused_naming_the_port(tmp_path):
    with socket.socket() as busy:
        busy.bind((LOOPBACK, 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            tapfl_command(
                "up",
                "--home",
                str(tmp_path),
                "--api-port",
                str(port),
                "--dashboard-port",
                str(free_port()),
                "--redis-port",
                str(free_port()),
            ),
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=120,
        )
    assert proc.returncode == 2
    assert f"port {port}" in proc.stdout and "--api-port" in proc.stdout


def test_sigterm_stops_every_child_and_the_token_survives_a_restart(tmp_path):
    import json

    stack = start_embedded_stack(tmp_path / "var")
    try:
        health = httpx.get(f"{stack.api_url}/api/v1/health", timeout=10).json()
        assert health["database"] is True and health["redis"] is True
        assert httpx.get(f"{stack.dashboard_url}/_stcore/health", timeout=10).status_code == 200
        children = json.loads((stack.home / "stack.json").read_text())["children"]
        assert set(children) == {"redis", "api", "worker", "dashboard"}
        token = stack.token
    finally:
        code = stack.stop()
    assert code == 0, stack.output()
    for name, pid in children.items():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert name  # every child is gone, not just the supervisor

    again = start_embedded_stack(tmp_path / "var")
    try:
        assert again.token == token
        response = httpx.get(
            f"{again.api_url}/api/v1/runs", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert response.status_code == 200
    finally:
        assert again.stop() == 0, again.output()


def _logs(home) -> str:
    logs = home / "logs"
    if not logs.exists():
        return ""
    return "".join(
        f"\n--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in logs.glob("*.log")
    )
