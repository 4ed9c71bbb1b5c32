from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from backend.api.deps import CurrentUser, RunQueueDep, SessionDep, SettingsDep, not_found
from backend.schemas import ExperimentCreate, ExperimentOut, Page
from backend.services import experiments

router = APIRouter(prefix="/experiments", tags=["experiments"])


@router.post("", response_model=ExperimentOut, status_code=status.HTTP_201_CREATED)
def create_experiment(
    body: ExperimentCreate,
    session: SessionDep,
    user: CurrentUser,
    queue: RunQueueDep,
    settings: SettingsDep,
) -> ExperimentOut:
    """Validate the preset with its overrides for every sweep combination, then queue the runs.

    The runs are stored before they are sent: if the run queue is down, they stay `queued`
    and are sent as soon as it answers again."""
    experiment = experiments.create_experiment(session, user, body)
    experiments.enqueue_runs(session, queue, experiment.runs, settings)
    return ExperimentOut.model_validate(experiment)


@router.get("", response_model=Page[ExperimentOut])
def list_experiments(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Page[ExperimentOut]:
    """Experiments newest first, each with its runs."""
    items, total = experiments.list_experiments(session, limit, offset)
    return Page[ExperimentOut](items=[ExperimentOut.model_validate(e) for e in items], total=total)


@router.get("/{experiment_id}", response_model=ExperimentOut)
def get_experiment(experiment_id: int, session: SessionDep) -> ExperimentOut:
    experiment = experiments.get_experiment(session, experiment_id)
    if experiment is None:
        raise not_found("experiment", experiment_id)
    return ExperimentOut.model_validate(experiment)
