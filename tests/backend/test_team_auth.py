"""A team on one server: every member reads everything, writes record the owner, and only
the owner or an admin changes (cancels, retries, deletes) what is theirs."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from backend.auth import hash_token
from backend.models import Run, RunStatus, User
from tests.backend.conftest import Api

EXPERIMENTS = "/api/v1/experiments"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _new_user(api: Api, name: str, admin: bool = False) -> str:
    response = api.post("/api/v1/users", json={"name": name, "admin": admin})
    assert response.status_code == 201, response.text
    return response.json()["token"]


def _set_status(sessions: sessionmaker[Session], run_id: int, status: RunStatus) -> None:
    with sessions() as session:
        run = session.get(Run, run_id)
        assert run is not None
        run.status = status
        session.commit()


def test_an_admin_creates_a_user_whose_token_is_shown_once_and_stored_hashed(
    api: Api, sessions: sessionmaker[Session]
) -> None:
    response = api.post("/api/v1/users", json={"name": "ada"})
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "ada" and body["is_admin"] is False
    assert body["token_prefix"] == body["token"][:6]
    with sessions() as session:
        user = session.query(User).filter_by(name="ada").one()
        assert user.token_hash == hash_token(body["token"]) != body["token"]
    listed = api.get("/api/v1/users").json()
    assert [u["name"] for u in listed] == ["admin", "ada"]
    assert all("token" not in u for u in listed)  # never shown again
    assert api.post("/api/v1/users", json={"name": "ada"}).status_code == 409


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"name": "has space"}, ["body", "name"]),
        ({"name": "x", "admin": "maybe"}, ["body", "admin"]),
        ({}, ["body", "name"]),
        ({"name": "x", "role": "admin"}, ["body", "role"]),
    ],
)
def test_a_bad_user_is_a_422_naming_the_field(api: Api, body: dict[str, Any], loc: list) -> None:
    response = api.post("/api/v1/users", json=body)
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [loc]


def test_only_admins_manage_users(api: Api) -> None:
    member = _bearer(_new_user(api, "bob"))
    assert api.client.get("/api/v1/users", headers=member).status_code == 403
    response = api.client.post("/api/v1/users", headers=member, json={"name": "eve"})
    assert response.status_code == 403
    assert api.client.post("/api/v1/users/admin/revoke", headers=member).status_code == 403
    # an admin made by an admin may
    boss = _bearer(_new_user(api, "boss", admin=True))
    assert api.client.get("/api/v1/users", headers=boss).status_code == 200


def test_a_revoked_user_gets_401_and_can_be_given_a_new_token(api: Api) -> None:
    token = _new_user(api, "leaver")
    assert api.client.get("/api/v1/runs", headers=_bearer(token)).status_code == 200
    revoked = api.post("/api/v1/users/leaver/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    response = api.client.get("/api/v1/runs", headers=_bearer(token))
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "Bearer"
    assert api.post("/api/v1/users/nobody/revoke").status_code == 404
    assert api.post("/api/v1/users/admin/revoke").status_code == 409  # not yourself
    again = _new_user(api, "leaver")
    assert again != token
    assert api.client.get("/api/v1/runs", headers=_bearer(again)).status_code == 200


def test_with_another_users_token_a_run_is_read_but_cancel_retry_delete_are_403(
    api: Api, sessions: sessionmaker[Session]
) -> None:
    alice = _bearer(_new_user(api, "alice"))
    bob = _bearer(_new_user(api, "bob"))
    created = api.client.post(EXPERIMENTS, headers=alice, json={"preset": "demo"})
    experiment = created.json()
    assert experiment["owner"] == "alice"  # the write records its owner
    run_id = experiment["runs"][0]["id"]

    for url in (
        f"/api/v1/runs/{run_id}",
        f"/api/v1/runs/{run_id}/metrics",
        f"{EXPERIMENTS}/{experiment['id']}",
        f"/api/v1/runs/{run_id}/artifacts",
    ):
        assert api.client.get(url, headers=bob).status_code == 200, url

    cancel = api.client.post(f"/api/v1/runs/{run_id}/cancel", headers=bob)
    assert cancel.status_code == 403
    assert "owner" in cancel.json()["detail"]
    assert api.client.get(f"/api/v1/runs/{run_id}", headers=bob).json()["status"] == "queued"
    assert api.client.delete(f"{EXPERIMENTS}/{experiment['id']}", headers=bob).status_code == 403
    _set_status(sessions, run_id, RunStatus.FAILED)
    assert api.client.post(f"/api/v1/runs/{run_id}/retry", headers=bob).status_code == 403
    _set_status(sessions, run_id, RunStatus.QUEUED)

    # the owner may
    mine = api.client.post(f"/api/v1/runs/{run_id}/cancel", headers=alice)
    assert mine.status_code == 200 and mine.json()["status"] == "cancelled"
    assert api.client.post(f"/api/v1/runs/{run_id}/retry", headers=alice).status_code == 200


def test_an_admin_may_cancel_and_delete_anyones_experiment(api: Api) -> None:
    alice = _bearer(_new_user(api, "alice"))
    experiment = api.client.post(EXPERIMENTS, headers=alice, json={"preset": "demo"}).json()
    run_id = experiment["runs"][0]["id"]
    assert api.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200  # api: the admin
    assert (
        api.client.delete(f"{EXPERIMENTS}/{experiment['id']}", headers=api.auth).status_code == 204
    )
    assert api.get(f"{EXPERIMENTS}/{experiment['id']}").status_code == 404


def test_an_unknown_run_is_404_before_403(api: Api) -> None:
    bob = _bearer(_new_user(api, "bob"))
    assert api.client.post("/api/v1/runs/999/cancel", headers=bob).status_code == 404


def _app_routes() -> list[tuple[str, str]]:
    from backend.main import app

    return [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if not path.endswith("/health")
        for method in operations
    ]


@pytest.mark.sqlite_only  # about the routes, not the database
def test_every_route_of_the_app_but_health_answers_401_without_a_token(api: Api) -> None:
    routes = _app_routes()
    assert len(routes) >= 20
    for method, path in routes:
        url = path.replace("{name}", "x").replace("{experiment_id}", "1").replace("{run_id}", "1")
        response = api.client.request(method, url, json={"preset": "demo"})
        assert response.status_code == 401, f"{method} {path}: {response.status_code}"


def test_the_bootstrap_admin_shows_its_token_prefix(api: Api) -> None:
    [admin] = [u for u in api.get("/api/v1/users").json() if u["name"] == "admin"]
    assert admin["is_admin"] and admin["token_prefix"] == api.token[:6]


def test_users_me_names_the_tokens_user_for_everyone_signed_in(api: Api) -> None:
    token = _new_user(api, "carol")
    me = api.client.get("/api/v1/users/me", headers=_bearer(token))
    assert me.status_code == 200
    assert (me.json()["name"], me.json()["is_admin"]) == ("carol", False)
    assert "token" not in me.json() and "token_hash" not in me.json()
    assert api.get("/api/v1/users/me").json()["name"] == "admin"
    api.post("/api/v1/users/carol/revoke")
    assert api.client.get("/api/v1/users/me", headers=_bearer(token)).status_code == 401
    assert api.client.get("/api/v1/users/me").status_code == 401
