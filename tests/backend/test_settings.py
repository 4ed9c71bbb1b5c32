from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from backend.settings import Settings


@pytest.fixture(autouse=True)
def _no_tapfl_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("TAPFL_"):
            monkeypatch.delenv(name)


def test_unset_fields_are_derived_from_home_and_ports(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "state", redis_port=6400, api_port=9000)
    assert s.database_url == f"sqlite:///{tmp_path / 'state' / 'tapfl.db'}"
    assert s.redis_url == "redis://127.0.0.1:6400/0"
    assert s.api_url == "http://127.0.0.1:9000"
    assert s.runs_dir == tmp_path / "state" / "runs"
    assert s.token_file == tmp_path / "state" / "token"


def test_relative_home_is_made_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.home == tmp_path / "var"
    assert s.database_url == f"sqlite:///{tmp_path / 'var' / 'tapfl.db'}"


def test_environment_sets_fields_with_the_tapfl_prefix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TAPFL_HOME", str(tmp_path))
    monkeypatch.setenv("TAPFL_DATABASE_URL", "postgresql+psycopg://u:p@db/tapfl")
    monkeypatch.setenv("TAPFL_REDIS_URL", "redis://broker:6379/1")
    monkeypatch.setenv("TAPFL_MAX_BODY_BYTES", "123")
    s = Settings()
    assert s.database_url == "postgresql+psycopg://u:p@db/tapfl"
    assert s.redis_url == "redis://broker:6379/1"
    assert s.max_body_bytes == 123
    assert s.runs_dir == tmp_path / "runs"


def test_client_token_prefers_the_setting_then_the_token_file(tmp_path: Path) -> None:
    s = Settings(home=tmp_path)
    assert s.client_token() is None
    (tmp_path / "token").write_text("from-file\n")
    assert s.client_token() == "from-file"
    assert Settings(home=tmp_path, token="explicit").client_token() == "explicit"


def test_derived_paths_follow_home_and_given_ones_are_made_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    derived = Settings(home=tmp_path / "state")
    assert (derived.runs_dir, derived.cache_dir) == (
        tmp_path / "state" / "runs",
        tmp_path / "state" / "cache",
    )
    # "." is a directory like any other, not "unset".
    monkeypatch.setenv("TAPFL_RUNS_DIR", ".")
    monkeypatch.setenv("TAPFL_CACHE_DIR", "cache-here")
    given = Settings(home=tmp_path / "state")
    assert (given.runs_dir, given.cache_dir) == (tmp_path, tmp_path / "cache-here")


def test_a_bad_value_is_the_only_error_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPFL_API_PORT", "80a")
    with pytest.raises(ValidationError) as info:
        Settings()
    assert [e["loc"] for e in info.value.errors()] == [("api_port",)]
