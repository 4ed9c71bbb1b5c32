"""Dependencies of the route handlers, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from backend.auth import user_for_token
from backend.db import get_session
from backend.models import Experiment, Run, User
from backend.queue import RunQueue, celery_run_queue
from backend.schemas import SQL_INT_MAX
from backend.services import experiments, runs
from backend.settings import Settings, get_settings

SettingsDep = Annotated[Settings, Depends(get_settings)]
# SQL INTEGER bounds, so that an id or offset too large for the database is a 422.
RunId = Annotated[int, Path(ge=1, le=SQL_INT_MAX, description="a run's id")]
ExperimentId = Annotated[int, Path(ge=1, le=SQL_INT_MAX, description="an experiment's id")]
Offset = Annotated[int, Query(ge=0, le=SQL_INT_MAX)]
SessionDep = Annotated[Session, Depends(get_session)]

# auto_error=False: a missing header gets the same 401 (with WWW-Authenticate) as a bad one.
_bearer = HTTPBearer(auto_error=False, description="the token from `{TAPFL_HOME}/token`")


def get_current_user(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    user = user_for_token(session, credentials.credentials) if credentials else None
    if user is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing, unknown or revoked token" if credentials else "not authenticated",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_run_queue(settings: SettingsDep) -> RunQueue:
    return celery_run_queue(settings.redis_url)


RunQueueDep = Annotated[RunQueue, Depends(get_run_queue)]


def not_found_name(kind: str, name: str) -> HTTPException:
    return HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"{kind} {name!r} not found")


def not_found(kind: str, id: int) -> HTTPException:
    return HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=f"{kind} {id} not found")


def load_run(run_id: RunId, session: SessionDep) -> Run:
    """The path's run. Every member reads every run, so only its existence is checked here;
    the routes that change a run check its owner with ``require_owner``."""
    run = runs.get_run(session, run_id)
    if run is None:
        raise not_found("run", run_id)
    return run


RunDep = Annotated[Run, Depends(load_run)]


def load_experiment(experiment_id: ExperimentId, session: SessionDep) -> Experiment:
    """The path's experiment; like runs, every member reads every experiment."""
    experiment = experiments.get_experiment(session, experiment_id)
    if experiment is None:
        raise not_found("experiment", experiment_id)
    return experiment


ExperimentDep = Annotated[Experiment, Depends(load_experiment)]


def get_admin_user(user: CurrentUser) -> User:
    if not user.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only an admin may do this")
    return user


AdminUser = Annotated[User, Depends(get_admin_user)]


def require_owner(user: User, owner_id: int, what: str) -> None:
    """403 unless ``user`` owns the thing or is an admin: every member reads everything,
    but only its owner (or an admin) cancels, retries or deletes it."""
    if user.id != owner_id and not user.is_admin:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"{what} belongs to another user; only its owner or an admin may change it",
        )
