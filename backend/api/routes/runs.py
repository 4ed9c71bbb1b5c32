from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy.orm import Session

from backend.api.deps import SessionDep, not_found
from backend.models import Run, RunStatus
from backend.schemas import LossFilter, LossOut, MetricFilter, MetricOut, Page, RunOut
from backend.services import metrics, runs

router = APIRouter(prefix="/runs", tags=["runs"])


@router.get("", response_model=Page[RunOut])
def list_runs(
    session: SessionDep,
    experiment_id: int | None = None,
    status: RunStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Page[RunOut]:
    """Runs newest first."""
    items, total = runs.list_runs(session, experiment_id, status, limit, offset)
    return Page[RunOut](items=[RunOut.model_validate(r) for r in items], total=total)


@router.get("/{run_id}", response_model=RunOut)
def get_run(run_id: int, session: SessionDep) -> RunOut:
    return RunOut.model_validate(_existing_run(session, run_id))


@router.get("/{run_id}/metrics", response_model=Page[MetricOut])
def get_metrics(
    run_id: int,
    session: SessionDep,
    filters: Annotated[MetricFilter, Query()],
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Page[MetricOut]:
    """Evaluation values, one series (client, task, model, split, metric) after another."""
    _existing_run(session, run_id)
    items, total = metrics.query_metrics(session, run_id, filters, limit, offset)
    return Page[MetricOut](items=[MetricOut.model_validate(m) for m in items], total=total)


@router.get("/{run_id}/metrics.csv", response_class=Response)
def get_metrics_csv(
    run_id: int,
    session: SessionDep,
    filters: Annotated[MetricFilter, Query()],
    limit: Annotated[int | None, Query(ge=1)] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """The rows of `/metrics` as CSV, all of them unless `limit` says otherwise."""
    _existing_run(session, run_id)
    items, _ = metrics.query_metrics(session, run_id, filters, limit, offset)
    return Response(
        metrics.metrics_csv(items),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="run-{run_id}-metrics.csv"'},
    )


@router.get("/{run_id}/losses", response_model=Page[LossOut])
def get_losses(
    run_id: int,
    session: SessionDep,
    filters: Annotated[LossFilter, Query()],
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Page[LossOut]:
    """Mean local-training loss per round, client, model and task."""
    _existing_run(session, run_id)
    items, total = metrics.query_losses(session, run_id, filters, limit, offset)
    return Page[LossOut](items=[LossOut.model_validate(x) for x in items], total=total)


def _existing_run(session: Session, run_id: int) -> Run:
    run = runs.get_run(session, run_id)
    if run is None:
        raise not_found("run", run_id)
    return run
