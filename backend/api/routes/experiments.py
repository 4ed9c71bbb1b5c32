from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status

from backend.api import examples as ex
from backend.api.deps import (
    CurrentUser,
    ExperimentDep,
    Offset,
    RunQueueDep,
    SessionDep,
    SettingsDep,
    require_owner,
)
from backend.schemas import (
    ExperimentCreate,
    ExperimentFilter,
    ExperimentOut,
    ExperimentPreview,
    Page,
)
from backend.services import experiments

router = APIRouter(prefix="/experiments", tags=["experiments"])


@router.post(
    "",
    response_model=ExperimentOut,
    status_code=status.HTTP_201_CREATED,
    responses=ex.responses(ex.EXPERIMENT, 413, 422, status=201),
)
def create_experiment(
    body: ExperimentCreate,
    session: SessionDep,
    user: CurrentUser,
    queue: RunQueueDep,
    settings: SettingsDep,
) -> ExperimentOut:
    """Validate the preset with its overrides for every sweep combination, then queue the runs.
    The token's user becomes the experiment's owner.

    The runs are stored before they are sent: if the run queue is down, they stay `queued`
    and are sent as soon as it answers again."""
    experiment = experiments.create_experiment(session, user, body)
    experiments.enqueue_runs(session, queue, experiment.runs, settings)
    return ExperimentOut.model_validate(experiment)


@router.post(
    "/preview",
    response_model=ExperimentPreview,
    responses=ex.responses(ex.EXPERIMENT_PREVIEW, 413, 422),
)
def preview_experiment(body: ExperimentCreate) -> ExperimentPreview:
    """What `POST /experiments` would queue for the same body: the number of runs, each
    run's sweep values and the first run's resolved config. It validates exactly as a
    submission does (the same 422s) and stores and queues nothing."""
    return ExperimentPreview.model_validate(experiments.preview_experiment(body))


@router.get("", response_model=Page[ExperimentOut], responses=ex.responses(ex.page(ex.EXPERIMENT)))
def list_experiments(
    session: SessionDep,
    filters: Annotated[ExperimentFilter, Query()],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> Page[ExperimentOut]:
    """Experiments newest first, each with its runs; every filter given must hold."""
    items, total = experiments.list_experiments(session, limit, offset, filters)
    return Page[ExperimentOut](items=[ExperimentOut.model_validate(e) for e in items], total=total)


@router.get(
    "/{experiment_id:int}", response_model=ExperimentOut, responses=ex.responses(ex.EXPERIMENT, 404)
)
def get_experiment(experiment: ExperimentDep) -> ExperimentOut:
    return ExperimentOut.model_validate(experiment)


@router.delete(
    "/{experiment_id:int}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={204: {"description": "deleted; no body"}, **ex.errors_of(403, 404, 409)},
)
def delete_experiment(
    experiment: ExperimentDep, session: SessionDep, user: CurrentUser, settings: SettingsDep
) -> Response:
    """Delete the experiment with its runs, their rows (metrics, losses, replacements, logs)
    and their directories (checkpoints, artifacts). Only its owner or an admin may; runs
    still queued or running must be cancelled first (409)."""
    require_owner(user, experiment.owner_id, f"experiment {experiment.id}")
    try:
        experiments.delete_experiment(session, experiment, settings.runs_dir)
    except experiments.ExperimentBusy as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)
