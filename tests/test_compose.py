"""docker-compose.yml: the team deployment's shape, validated by Compose where it exists."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

COMPOSE = Path(__file__).resolve().parent.parent / "docker-compose.yml"


def _compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_file_is_valid_for_docker_compose():
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no docker compose CLI here; the file's structure is checked by the next test")
    proc = subprocess.run(
        [*cli, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_services_have_healthchecks_healthy_dependencies_volumes_and_env():
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    assert {"redis", "postgres", "api", "worker", "dashboard"} <= set(services)
    for name in ("redis", "postgres", "api", "worker", "dashboard"):
        assert "healthcheck" in services[name], name
    for name in ("api", "worker", "dashboard"):
        for dep in services[name]["depends_on"].values():
            assert dep["condition"] == "service_healthy", name
    assert "alembic" in " ".join(services["api"]["command"])  # the API applies migrations
    assert {"postgres-data", "artifacts"} <= set(spec["volumes"])
    assert services["api"]["environment"]["TAPFL_DATABASE_URL"].startswith("postgresql+psycopg://")
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


def test_the_dashboard_holds_no_token_and_requires_sign_in():
    """It listens on every interface: nothing may let a visitor act as the admin."""
    dashboard = yaml.safe_load(COMPOSE.read_text())["services"]["dashboard"]
    env = dashboard.get("environment", {})
    assert "TAPFL_TOKEN" not in env and "TAPFL_DASHBOARD_AUTO_SIGNIN" not in env
    assert "<<" not in env  # not the shared env either
    # No volume: the admin token file lives in the API's state directory.
    assert not dashboard.get("volumes")
