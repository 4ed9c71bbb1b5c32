"""Reading runs, and the status transitions the worker makes."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from backend.models import Run, RunStatus, utcnow

# What the run row shows before the engine's first round: loading data and models.
SETUP_STAGE = "setup"


def list_runs(
    session: Session,
    experiment_id: int | None = None,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Run], int]:
    """Runs newest first, optionally of one experiment or in one status."""
    query = select(Run)
    if experiment_id is not None:
        query = query.where(Run.experiment_id == experiment_id)
    if status is not None:
        query = query.where(Run.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(query.order_by(Run.id.desc()).limit(limit).offset(offset)).all()
    return list(items), total


def get_run(session: Session, run_id: int) -> Run | None:
    return session.get(Run, run_id)


def claim_run(session: Session, run_id: int) -> Run | None:
    """Mark a run ``running`` for the worker that got its message; None: do not run it.

    A ``running`` run is claimed again: its worker died and the broker re-delivered the
    message, and the engine resumes from the run's last checkpoint. A run cancelled while
    queued ends here without starting.
    """
    now = utcnow()
    claimed = session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status.in_([RunStatus.QUEUED, RunStatus.RUNNING]))
        .values(status=RunStatus.RUNNING, stage=SETUP_STAGE, heartbeat_at=now, error=None)
    ).rowcount
    run = session.get(Run, run_id)
    if run is None:
        session.rollback()
        return None
    if not claimed:
        if run.status == RunStatus.CANCELLING:
            run.status, run.finished_at = RunStatus.CANCELLED, now
        session.commit()
        return None
    if run.started_at is None:
        run.started_at = now
    session.commit()
    return run


def set_workdir(session: Session, run_id: int, workdir: str) -> None:
    session.execute(update(Run).where(Run.id == run_id).values(workdir=workdir))
    session.commit()


def finish_run(session: Session, run_id: int, status: RunStatus) -> None:
    """The engine returned: the run ``succeeded`` or was ``cancelled``."""
    now = utcnow()
    values: dict[str, object] = {"status": status, "finished_at": now, "heartbeat_at": now}
    if status == RunStatus.SUCCEEDED:
        values |= {"progress": 1.0, "eta_s": 0.0}
    else:
        values["eta_s"] = None
    session.execute(update(Run).where(Run.id == run_id).values(**values))
    session.commit()


def fail_run(session: Session, run_id: int, error: str) -> None:
    now = utcnow()
    session.execute(
        update(Run)
        .where(Run.id == run_id)
        .values(status=RunStatus.FAILED, error=error, finished_at=now, heartbeat_at=now, eta_s=None)
    )
    session.commit()


def run_status(session: Session, run_id: int) -> str | None:
    return session.scalar(select(Run.status).where(Run.id == run_id))


def heartbeat(session: Session, run_id: int) -> None:
    session.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=utcnow()))
    session.commit()
