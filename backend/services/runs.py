"""Reading runs, and every status transition of their lifecycle (docs/LIFECYCLE.md).

SQL is the source of truth. Each transition is a compare-and-set on the run's ``(status,
attempt)`` as it was read: of two processes that race for the same run (two workers with
duplicate messages, a worker and the reconciler, a cancel and the end of the run) exactly
one wins, and the loser reads the run again and decides anew. Every transition is stored
with its time and reason in ``run_transitions`` and as a line of the run's log.

``attempt`` is a fencing token: a claim increments it, and a worker writes the run's status
and progress only while the run still carries the attempt it claimed, so a worker that was
presumed lost and comes back cannot overwrite the run another worker took over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from backend.models import (
    TERMINAL_STATUSES,
    Run,
    RunStatus,
    RunTransition,
    TrainingLoss,
    utcnow,
)
from backend.services.leases import Lease
from backend.services.run_logs import add_log

# What the run row shows before the engine's first round: loading data and models.
SETUP_STAGE = "setup"
_MAX_TRIES = 10


class LifecycleError(ValueError):
    """The run's status does not allow what was asked (the API answers 409)."""


@dataclass
class Change:
    to: RunStatus
    reason: str
    values: dict[str, Any] = field(default_factory=dict)
    level: str = "INFO"


@dataclass(frozen=True)
class Owner:
    """The worker process that claims a run: a name for people and a lease for liveness."""

    name: str
    lease: str

    @classmethod
    def current(cls, node: str) -> Owner:
        lease = Lease.current()
        return cls(f"{node} pid {lease.pid}", lease.encode())


# --- reading -----------------------------------------------------------------------------


def list_runs(
    session: Session,
    experiment_id: int | None = None,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
    group_id: str | None = None,
) -> tuple[list[Run], int]:
    """Runs newest first, optionally of one experiment, one sweep group or in one status."""
    query = select(Run)
    if experiment_id is not None:
        query = query.where(Run.experiment_id == experiment_id)
    if group_id is not None:
        query = query.where(Run.group_id == group_id)
    if status is not None:
        query = query.where(Run.status == status)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(query.order_by(Run.id.desc()).limit(limit).offset(offset)).all()
    return list(items), total


def get_run(session: Session, run_id: int) -> Run | None:
    return session.get(Run, run_id)


def fresh(session: Session, run_id: int) -> Run | None:
    """The run as the database has it now, not as this session last saw it."""
    return session.execute(
        select(Run).where(Run.id == run_id).execution_options(populate_existing=True)
    ).scalar_one_or_none()


def transitions(session: Session, run_id: int) -> list[RunTransition]:
    query = select(RunTransition).where(RunTransition.run_id == run_id)
    return list(session.scalars(query.order_by(RunTransition.id)).all())


def latest_losses(session: Session, run_id: int) -> list[TrainingLoss]:
    """Each client's most recent local-training loss per model and task."""
    stage = session.scalar(
        select(TrainingLoss.stage)
        .where(TrainingLoss.run_id == run_id)
        .order_by(TrainingLoss.stage.desc())  # "post" comes after "fl"
        .limit(1)
    )
    if stage is None:
        return []
    keys = (TrainingLoss.client, TrainingLoss.model, TrainingLoss.task)
    last = (
        select(*keys, func.max(TrainingLoss.round).label("round"))
        .where(TrainingLoss.run_id == run_id, TrainingLoss.stage == stage)
        .group_by(*keys)
        .subquery()
    )
    query = select(TrainingLoss).join(
        last,
        (TrainingLoss.client == last.c.client)
        & (TrainingLoss.model == last.c.model)
        & (TrainingLoss.task == last.c.task)
        & (TrainingLoss.round == last.c.round),
    )
    query = query.where(TrainingLoss.run_id == run_id, TrainingLoss.stage == stage)
    return list(session.scalars(query.order_by(*keys)).all())


def run_state(session: Session, run_id: int) -> tuple[str, int] | None:
    """``(status, attempt)``, read fresh: what a running worker polls between steps."""
    row = session.execute(select(Run.status, Run.attempt).where(Run.id == run_id)).one_or_none()
    session.rollback()  # end the read transaction: the next poll must see new commits
    return None if row is None else (row[0], row[1])


# --- the machinery -----------------------------------------------------------------------


def _cas(session: Session, run: Run, change: Change, source: str, now: datetime) -> bool:
    """Apply ``change`` if the run still has the status and attempt it was read with."""
    before, attempt = run.status, run.attempt
    result = session.execute(
        update(Run)
        .where(Run.id == run.id, Run.status == before, Run.attempt == attempt)
        .values(status=change.to, **change.values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        return False
    attempt = change.values.get("attempt", attempt)
    session.add(
        RunTransition(
            run_id=run.id,
            at=now,
            from_status=before,
            to_status=change.to,
            attempt=attempt,
            reason=change.reason,
        )
    )
    add_log(
        session,
        run.id,
        f"{before} -> {change.to}: {change.reason}",
        level=change.level,
        source=source,
        attempt=attempt,
        time=now,
    )
    session.commit()
    return True


def apply(
    session: Session,
    run_id: int,
    decide: Callable[[Run, datetime], Change | None],
    source: str,
) -> tuple[Run | None, bool]:
    """Read the run, let ``decide`` pick a change (or none), apply it atomically.

    Returns the run as it is afterwards and whether the change was made. ``decide`` may
    raise ``LifecycleError`` to refuse.
    """
    for _ in range(_MAX_TRIES):
        run = fresh(session, run_id)
        if run is None:
            session.rollback()
            return None, False
        now = utcnow()
        change = decide(run, now)
        if change is None:
            session.rollback()
            return run, False
        if _cas(session, run, change, source, now):
            return fresh(session, run_id), True
    raise RuntimeError(f"run {run_id} kept changing under concurrent updates; gave up")


def record_created(session: Session, runs: list[Run], reason: str) -> None:
    """The first transition of new runs (the caller has flushed them; it commits)."""
    now = utcnow()
    for run in runs:
        session.add(
            RunTransition(
                run_id=run.id,
                at=now,
                from_status=None,
                to_status=run.status,
                attempt=0,
                reason=reason,
            )
        )
        add_log(session, run.id, f"-> {run.status}: {reason}", source="api", attempt=0, time=now)


def owner_lost(run: Run, now: datetime, heartbeat_timeout_s: float) -> str | None:
    """Why the worker that owns a running run is gone, or None if it may still be alive."""
    who = run.worker or "its worker"
    # A dead process is the cause itself; a stale heartbeat is only its symptom (a run's
    # heartbeats can also lag on a busy machine), so the certain reason comes first.
    lease = Lease.decode(run.lease)
    if lease is not None and lease.alive() is False:
        return f"the process of {who} is gone"
    beat = run.heartbeat_at or run.claimed_at
    if beat is None:
        return f"{who} never sent a heartbeat"
    age = (now - beat).total_seconds()
    if age > heartbeat_timeout_s:
        return f"no heartbeat from {who} for {age:.0f} s"
    return None


# --- transitions -------------------------------------------------------------------------


def claim_run(
    session: Session,
    run_id: int,
    owner: Owner,
    *,
    task_id: str | None,
    heartbeat_timeout_s: float,
    max_recoveries: int,
) -> Run | None:
    """Make ``owner`` the worker of a run; None: do not run it.

    A queued run is claimed. A running run is taken over only if its worker is gone (its
    process died on this machine, or its heartbeat went stale): the broker re-delivered the
    message of a lost worker, and the engine resumes from the last checkpoint. A message
    for a run that a live worker runs, or that has ended, is a duplicate and is dropped.
    """

    def take(run: Run, now: datetime) -> dict[str, Any]:
        values: dict[str, Any] = {
            "attempt": run.attempt + 1,
            "worker": owner.name,
            "lease": owner.lease,
            "task_id": task_id or run.task_id,
            "claimed_at": now,
            "heartbeat_at": now,
            "stage": SETUP_STAGE,
            "eta_s": None,
            "error": None,
        }
        if run.started_at is None:
            values["started_at"] = now
        return values

    def decide(run: Run, now: datetime) -> Change | None:
        if run.status == RunStatus.QUEUED:
            attempt = run.attempt + 1
            return Change(
                RunStatus.RUNNING, f"taken by {owner.name} (attempt {attempt})", take(run, now)
            )
        if run.status not in (RunStatus.RUNNING, RunStatus.CANCELLING):
            return None
        lost = owner_lost(run, now, heartbeat_timeout_s)
        if lost is None:
            return None  # a live worker runs it
        if run.status == RunStatus.CANCELLING:
            return end_cancelled(f"{lost} while it was being cancelled", now)
        if run.recoveries >= max_recoveries:
            return gave_up(run, lost, now)
        return Change(
            RunStatus.RUNNING,
            f"{lost}; {owner.name} resumes it from its last checkpoint (attempt {run.attempt + 1})",
            {**take(run, now), "recoveries": run.recoveries + 1},
            level="WARNING",
        )

    run, changed = apply(session, run_id, decide, source="worker")
    if not changed or run is None or run.status != RunStatus.RUNNING or run.lease != owner.lease:
        return None
    return run


def stale_message(run: Run | None, now: datetime, heartbeat_timeout_s: float) -> str | None:
    """Why a message for ``run`` would start nothing, or None when ``claim_run`` may act.

    The worker asks this before it starts a process for a message: a message for a run that
    is gone, has ended, or that a live worker runs, is dropped at no cost.
    """
    if run is None:
        return "no such run"
    if run.status in TERMINAL_STATUSES:
        return f"it is {run.status}"
    active = run.status in (RunStatus.RUNNING, RunStatus.CANCELLING)
    if active and owner_lost(run, now, heartbeat_timeout_s) is None:
        return f"{run.worker} runs it (a duplicate message)"
    return None


def end_cancelled(reason: str, now: datetime) -> Change:
    return Change(RunStatus.CANCELLED, reason, {"finished_at": now, "eta_s": None})


def gave_up(run: Run, lost: str, now: datetime) -> Change:
    losses = run.recoveries + 1
    error = (
        f"gave up after losing its worker {losses} times in a row ({lost}); a worker that "
        "keeps dying on a run is often out of memory. Retry resumes from the last checkpoint."
    )
    values = {"error": error, "finished_at": now, "eta_s": None}
    return Change(RunStatus.FAILED, error, values, level="ERROR")


def heartbeat(session: Session, run_id: int, attempt: int) -> bool:
    """Mark the run alive; False once it no longer belongs to ``attempt`` (or has ended)."""
    result = session.execute(
        update(Run)
        .where(
            Run.id == run_id,
            Run.attempt == attempt,
            Run.status.in_([RunStatus.RUNNING, RunStatus.CANCELLING]),
        )
        .values(heartbeat_at=utcnow())
    )
    session.commit()
    return result.rowcount == 1  # type: ignore[attr-defined]


def _owned(run: Run, attempt: int | None) -> bool:
    active = run.status in (RunStatus.RUNNING, RunStatus.CANCELLING)
    return active and (attempt is None or run.attempt == attempt)


def finish_run(
    session: Session, run_id: int, attempt: int | None, status: RunStatus, rounds: int
) -> bool:
    """The engine returned: the run ``succeeded`` or was ``cancelled`` on request."""

    def decide(run: Run, now: datetime) -> Change | None:
        if not _owned(run, attempt):
            return None
        values: dict[str, Any] = {"finished_at": now, "heartbeat_at": now}
        if status == RunStatus.SUCCEEDED:
            late = " (the cancel request came too late)" if run.status == "cancelling" else ""
            values |= {"progress": 1.0, "eta_s": 0.0}
            return Change(status, f"all {run.total_rounds} rounds done{late}", values)
        values["eta_s"] = None
        kept = f"round {rounds}" if rounds else "no round"
        return Change(status, f"stopped on request; its checkpoint holds {kept}", values)

    return apply(session, run_id, decide, source="worker")[1]


def fail_run(session: Session, run_id: int, attempt: int | None, error: str) -> bool:
    """The run cannot go on: its error (a reason, then the end of the traceback) is kept."""

    def decide(run: Run, now: datetime) -> Change | None:
        if not _owned(run, attempt):
            return None
        values = {"error": error, "finished_at": now, "heartbeat_at": now, "eta_s": None}
        return Change(RunStatus.FAILED, error.split("\n", 1)[0], values, level="ERROR")

    return apply(session, run_id, decide, source="worker")[1]


def fail_task(session: Session, run_id: int, task_id: str, error: str) -> bool:
    """Fail the run if its current attempt came from message ``task_id``, whose time limit
    ran out: the worker killed its process at the hard limit, or the soft limit struck
    before the claim was done (the run is still ``queued`` with that message's id)."""

    def decide(run: Run, now: datetime) -> Change | None:
        waiting = run.status == RunStatus.QUEUED
        if not (waiting or _owned(run, None)) or run.task_id != task_id:
            return None
        values = {"error": error, "finished_at": now, "eta_s": None}
        return Change(RunStatus.FAILED, error, values, level="ERROR")

    return apply(session, run_id, decide, source="worker")[1]


def requeue_run(session: Session, run_id: int, attempt: int, reason: str) -> bool:
    """Hand a running run back to the queue (its worker is shutting down)."""

    def decide(run: Run, now: datetime) -> Change | None:
        if not _owned(run, attempt):
            return None
        if run.status == RunStatus.CANCELLING:
            return end_cancelled(f"{reason}; it was being cancelled anyway", now)
        return Change(RunStatus.QUEUED, reason, requeued_values(now), level="WARNING")

    run, changed = apply(session, run_id, decide, source="worker")
    return changed and run is not None and run.status == RunStatus.QUEUED


def requeued_values(now: datetime) -> dict[str, Any]:
    return {
        "queued_at": now,
        "sent_at": None,
        "worker": None,
        "lease": None,
        "eta_s": None,
        "finished_at": None,
    }


def cancel_run(session: Session, run_id: int, by: str, heartbeat_timeout_s: float) -> Run | None:
    """Stop a queued run at once; ask a running one to stop after its current local step."""

    def decide(run: Run, now: datetime) -> Change | None:
        match run.status:
            case RunStatus.QUEUED:
                return end_cancelled(f"cancelled by {by} before it started", now)
            case RunStatus.RUNNING:
                lost = owner_lost(run, now, heartbeat_timeout_s)
                if lost is not None:
                    return end_cancelled(f"cancelled by {by}; {lost}", now)
                return Change(
                    RunStatus.CANCELLING,
                    f"cancel requested by {by}; it stops after the current local step",
                )
            case RunStatus.CANCELLING | RunStatus.CANCELLED:
                return None  # asked twice: the same answer
            case _:
                raise LifecycleError(f"run {run.id} already {run.status}; nothing to cancel")

    return apply(session, run_id, decide, source="api")[0]


def retry_run(session: Session, run_id: int, by: str) -> Run | None:
    """Queue a failed or cancelled run again; the engine resumes from its last checkpoint."""

    def decide(run: Run, now: datetime) -> Change | None:
        if run.status == RunStatus.SUCCEEDED:
            raise LifecycleError(
                f"run {run.id} succeeded; submit its experiment again to repeat it"
            )
        if run.status not in TERMINAL_STATUSES:
            raise LifecycleError(
                f"run {run.id} is {run.status}; only a failed or cancelled run can be retried"
            )
        values = {**requeued_values(now), "error": None, "stage": None, "recoveries": 0}
        return Change(
            RunStatus.QUEUED, f"retried by {by}; it resumes from its last checkpoint", values
        )

    return apply(session, run_id, decide, source="api")[0]


def mark_sent(session: Session, run_id: int, task_id: str) -> None:
    """A message for the run is on the broker (a worker may already have claimed it)."""
    session.execute(
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.QUEUED)
        .values(sent_at=utcnow(), task_id=task_id)
    )
    session.commit()


def set_workdir(session: Session, run_id: int, workdir: str) -> None:
    session.execute(update(Run).where(Run.id == run_id).values(workdir=workdir))
    session.commit()
