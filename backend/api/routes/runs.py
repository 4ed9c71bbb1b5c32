from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status
from sqlalchemy.orm import Session

from backend.api import examples as ex
from backend.api.deps import (
    CurrentUser,
    Offset,
    RunDep,
    RunQueueDep,
    SessionDep,
    SettingsDep,
    not_found,
    require_owner,
)
from backend.models import Run, RunStatus
from backend.schemas import (
    SQL_INT_MAX,
    LogLine,
    LossFilter,
    LossOut,
    MetricFilter,
    MetricOut,
    Page,
    RunDetail,
    RunOut,
    StepFilter,
    StepOut,
    TransitionOut,
)
from backend.services import metrics, run_logs, runs
from backend.services.dispatch import send_runs

router = APIRouter(prefix="/runs", tags=["runs"])


@router.get("", response_model=Page[RunOut], responses=ex.responses(ex.page(ex.RUN)))
def list_runs(
    session: SessionDep,
    experiment_id: Annotated[int | None, Query(ge=1, le=SQL_INT_MAX)] = None,
    group_id: str | None = None,
    status: RunStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Offset = 0,
) -> Page[RunOut]:
    """Runs newest first."""
    items, total = runs.list_runs(session, experiment_id, status, limit, offset, group_id)
    return Page[RunOut](items=[RunOut.model_validate(r) for r in items], total=total)


@router.get("/{run_id}", response_model=RunDetail, responses=ex.responses(ex.RUN_DETAIL, 404))
def get_run(run: RunDep, session: SessionDep) -> RunDetail:
    """The run's status and progress (stage, round of total, ETA), each client's latest
    training losses, and every status change with its time and reason."""
    return _detail(session, run)


_CHANGE = ex.responses(ex.RUN_DETAIL, 403, 404, 409)


@router.post("/{run_id}/cancel", response_model=RunDetail, responses=_CHANGE)
def cancel_run(
    run: RunDep, session: SessionDep, user: CurrentUser, settings: SettingsDep
) -> RunDetail:
    """A queued run is cancelled at once; a running one becomes `cancelling` and stops after
    its current local training step, keeping the checkpoint of its last completed round.
    Cancelling again a run that is already `cancelling` or `cancelled` changes nothing and
    answers 200 with the run as it is; a run that succeeded or failed answers 409. Only the
    run's owner or an admin may cancel it (403)."""
    run_id = run.id
    require_owner(user, run.experiment.owner_id, f"run {run_id}")
    with _conflict():
        cancelled = runs.cancel_run(session, run_id, user.name, settings.heartbeat_timeout_s)
    return _detail(session, _still_there(cancelled, run_id))


@router.post("/{run_id}/retry", response_model=RunDetail, responses=_CHANGE)
def retry_run(
    run: RunDep, session: SessionDep, user: CurrentUser, queue: RunQueueDep, settings: SettingsDep
) -> RunDetail:
    """Queue a failed or cancelled run again; it resumes from its last checkpoint. Only the
    run's owner or an admin may retry it (403)."""
    run_id = run.id
    require_owner(user, run.experiment.owner_id, f"run {run_id}")
    with _conflict():
        retried = _still_there(runs.retry_run(session, run_id, user.name), run_id)
    send_runs(session, queue, [retried], settings, source="api")
    return _detail(session, _still_there(runs.fresh(session, run_id), run_id))


@router.get(
    "/{run_id}/logs",
    response_model=Page[LogLine],
    responses=ex.responses(ex.page(ex.LOG_LINE), 404),
)
def get_logs(
    run: RunDep,
    session: SessionDep,
    after: Annotated[
        int, Query(ge=0, le=SQL_INT_MAX, description="the last `seq` already read")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    level: Annotated[str | None, Query(pattern="^(DEBUG|INFO|WARNING|ERROR)$")] = None,
) -> Page[LogLine]:
    """The run's log lines in order: the lifecycle's notes and the engine's and worker's
    logging while it ran. Poll with `after` set to the last `seq` seen to follow a run."""
    items, total = run_logs.query_logs(session, run.id, after, limit, level)
    return Page[LogLine](items=[LogLine.model_validate(x) for x in items], total=total)


@router.get(
    "/{run_id}/logs.txt",
    response_class=Response,
    responses=ex.responses(ex.LOGS_TEXT, 404, media_type="text/plain"),
)
def get_logs_text(run: RunDep, session: SessionDep) -> Response:
    """The whole log as plain text, one line per entry."""
    items, _ = run_logs.query_logs(session, run.id, 0, None)
    return Response(run_logs.logs_text(items), media_type="text/plain; charset=utf-8")


@router.get(
    "/{run_id}/metrics",
    response_model=Page[MetricOut],
    responses=ex.responses(ex.page(ex.METRIC), 404),
)
def get_metrics(
    run: RunDep,
    session: SessionDep,
    filters: Annotated[MetricFilter, Query()],
    limit: Annotated[int, Query(ge=1, le=1_000_000)] = 10_000,
    offset: Offset = 0,
) -> Response:
    """Evaluation values, one series (client, task, model, split, metric) after another."""
    rows, total = metrics.metric_rows(session, run.id, filters, limit, offset)
    return Response(metrics.metrics_page_json(rows, total), media_type="application/json")


@router.get(
    "/{run_id}/metrics.csv",
    response_class=Response,
    responses=ex.responses(ex.METRICS_CSV, 404, media_type="text/csv"),
)
def get_metrics_csv(
    run: RunDep,
    session: SessionDep,
    filters: Annotated[MetricFilter, Query()],
    limit: Annotated[int | None, Query(ge=1, le=SQL_INT_MAX)] = None,
    offset: Offset = 0,
) -> Response:
    """The rows of `/metrics` as CSV, all of them unless `limit` says otherwise."""
    rows, _ = metrics.metric_rows(session, run.id, filters, limit, offset)
    return Response(
        metrics.metrics_csv(rows),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="run-{run.id}-metrics.csv"'},
    )


@router.get(
    "/{run_id}/losses", response_model=Page[LossOut], responses=ex.responses(ex.page(ex.LOSS), 404)
)
def get_losses(
    run: RunDep,
    session: SessionDep,
    filters: Annotated[LossFilter, Query()],
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    offset: Offset = 0,
) -> Page[LossOut]:
    """Mean local-training loss per round, client, model and task."""
    items, total = metrics.query_losses(session, run.id, filters, limit, offset)
    return Page[LossOut](items=[LossOut.model_validate(x) for x in items], total=total)


@router.get(
    "/{run_id}/steps", response_model=Page[StepOut], responses=ex.responses(ex.page(ex.STEP), 404)
)
def get_steps(
    run: RunDep,
    session: SessionDep,
    filters: Annotated[StepFilter, Query()],
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    offset: Offset = 0,
) -> Page[StepOut]:
    """Stage 2 step by step: per optimizer step of each post-FL fine-tuning (TAP's teacher
    `global_ft`, the `final` model) each task's loss (`term` `task`) and each term the
    algorithm adds to it (`kd`: TAP's λ·KD per task), by client, model, stage, round, step,
    term and task."""
    items, total = metrics.query_steps(session, run.id, filters, limit, offset)
    return Page[StepOut](items=[StepOut.model_validate(x) for x in items], total=total)


def _still_there(run: Run | None, run_id: int) -> Run:
    """The run a lifecycle change returned; None if it was deleted while the request ran."""
    if run is None:
        raise not_found("run", run_id)
    return run


def _detail(session: Session, run: Run) -> RunDetail:
    return RunDetail.model_validate(
        {
            **RunOut.model_validate(run).model_dump(),
            "latest_losses": [
                LossOut.model_validate(x) for x in runs.latest_losses(session, run.id)
            ],
            "transitions": [
                TransitionOut.model_validate(t) for t in runs.transitions(session, run.id)
            ],
        }
    )


@contextmanager
def _conflict() -> Iterator[None]:
    try:
        yield
    except runs.LifecycleError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
