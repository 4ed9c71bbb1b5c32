from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from backend.auth import create_user, ensure_bootstrap_token, hash_token, user_for_token
from backend.db import session_factory, upgrade_database
from backend.models import User, utcnow
from backend.settings import Settings
from tests.backend.conftest import Api


def test_a_user_token_is_stored_only_as_its_sha256(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        user, token = create_user(session, "ada", is_admin=False)
        session.commit()
        assert len(token) >= 40
        assert user.token_hash == hash_token(token) != token
        assert user_for_token(session, token) == user
        assert user_for_token(session, token + "x") is None


def test_first_start_writes_an_owner_only_admin_token_and_later_starts_reuse_it(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    token = ensure_bootstrap_token(settings)
    assert settings.token_file.read_text().strip() == token
    assert stat.S_IMODE(settings.token_file.stat().st_mode) == 0o600
    with sessions() as session:
        admin = session.scalar(select(User).where(User.name == "admin"))
        assert admin is not None and admin.is_admin and admin.token_hash == hash_token(token)
    assert ensure_bootstrap_token(settings) == token


def test_a_wiped_database_gets_the_admin_back_for_the_token_file(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    token = ensure_bootstrap_token(settings)
    with sessions() as session:
        session.execute(delete(User))
        session.commit()
    assert ensure_bootstrap_token(settings) == token
    with sessions() as session:
        assert user_for_token(session, token) is not None


@pytest.mark.parametrize("lost", ["file", "revoked"])
def test_a_lost_or_revoked_admin_token_is_replaced(
    settings: Settings, sessions: sessionmaker[Session], lost: str
) -> None:
    old = ensure_bootstrap_token(settings)
    if lost == "file":
        settings.token_file.unlink()
    else:
        with sessions() as session:
            admin = session.scalar(select(User).where(User.name == "admin"))
            assert admin is not None
            admin.revoked_at = utcnow()
            session.commit()
    new = ensure_bootstrap_token(settings)
    assert new != old
    assert settings.token_file.read_text().strip() == new
    with sessions() as session:
        assert user_for_token(session, new) is not None
        assert user_for_token(session, old) is None
        assert session.query(User).count() == 1


ROUTES = [
    ("GET", "/api/v1/presets"),
    ("GET", "/api/v1/experiments"),
    ("GET", "/api/v1/experiments/1"),
    ("POST", "/api/v1/experiments"),
    ("GET", "/api/v1/runs"),
    ("GET", "/api/v1/runs/1"),
    ("GET", "/api/v1/runs/1/metrics"),
    ("GET", "/api/v1/runs/1/metrics.csv"),
    ("GET", "/api/v1/runs/1/losses"),
]


@pytest.mark.parametrize(("method", "url"), ROUTES)
@pytest.mark.parametrize(
    "header", [None, "Bearer not-a-token", "Basic YWRtaW46YWRtaW4="], ids=["none", "wrong", "basic"]
)
def test_every_v1_route_but_health_answers_401_without_a_valid_token(
    api: Api, method: str, url: str, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    response = api.client.request(method, url, headers=headers, json={"preset": "demo"})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert api.queue_sent == []  # nothing was submitted


def test_a_revoked_token_is_refused(api: Api, sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        _, token = create_user(session, "leaver")
        session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get("/api/v1/runs", headers=headers).status_code == 200
    with sessions() as session:
        session.execute(
            User.__table__.update().where(User.name == "leaver").values(revoked_at=utcnow())
        )
        session.commit()
    assert api.client.get("/api/v1/runs", headers=headers).status_code == 401


def test_the_bootstrap_token_and_a_created_users_token_both_work(
    api: Api, sessions: sessionmaker[Session]
) -> None:
    assert api.get("/api/v1/runs").status_code == 200
    assert api.post("/api/v1/experiments", json={"preset": "demo"}).status_code == 201
    with sessions() as session:
        _, token = create_user(session, "bob")
        session.commit()
    response = api.client.get("/api/v1/presets", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_health_needs_no_token(api: Api) -> None:
    assert api.client.get("/api/v1/health").status_code in (200, 503)


@pytest.mark.sqlite_only  # about the database a --home derives
def test_bootstrap_uses_the_database_of_the_settings_it_is_given(
    settings: Settings, tmp_path: Path
) -> None:
    # `tapfl up --home DIR` builds its own Settings; the process's env points elsewhere.
    other = Settings(home=tmp_path / "elsewhere")
    assert other.database_url != settings.database_url
    upgrade_database(other.database_url)
    token = ensure_bootstrap_token(other)
    assert other.token_file.read_text().strip() == token
    assert not settings.token_file.exists()
    with session_factory(other.database_url)() as session:
        assert user_for_token(session, token) is not None
