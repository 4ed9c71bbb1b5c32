"""The reconciler: brings SQL and the broker back into agreement after something failed.

1. **Lost workers.** A ``running`` run whose heartbeat is older than
   ``heartbeat_timeout_s`` (or whose worker process is gone from this machine) lost its
   worker: process killed, out of memory, machine gone. It goes back to ``queued`` and is
   sent again; the next worker resumes it from its last checkpoint. A ``cancelling`` one
   becomes ``cancelled``; one whose attempt outlived its time limit, or lost too often in
   a row, ``failed``: a run that reached its limit is never queued again by itself.
2. **Lost messages.** A ``queued`` run for which the broker holds no live message, sent
   at least ``resend_after_s`` ago, is sent again. A message is lost when Redis restarted
   without its data or was flushed, and dead when a worker took it but never claimed the
   run: a live worker claims its run in SQL within seconds of taking the message, so a
   message held unacknowledged for ``resend_after_s`` while its run is still ``queued``
   belongs to a worker that is gone (killed, or shut down while Redis was down and its
   message restored from Redis's append-only file). Such an entry stays in Redis's
   ``unacked`` hash until the visibility timeout, and its re-delivery is dropped then.

It runs every ``reconcile_interval_s`` in a thread of the API process, or as ``tapfl
reconcile``. Several reconcilers (API replicas) take turns through a Redis lock; they would
be safe without it, since every change is a compare-and-set in SQL and a duplicate message
is dropped by the claim.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.models import Run, RunStatus, utcnow
from backend.queue import RunQueue
from backend.services import runs
from backend.services.dispatch import send_runs, time_limits
from backend.services.run_logs import add_log
from backend.settings import Settings

log = logging.getLogger(__name__)

LOCK_KEY = "tapfl:reconciler"


@dataclass
class Report:
    requeued: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    resent: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.requeued or self.cancelled or self.failed or self.resent)


def recover_lost_workers(session: Session, settings: Settings, report: Report) -> list[Run]:
    """Step 1; returns the runs it put back in the queue (to be sent)."""
    active = session.scalars(
        select(Run.id).where(Run.status.in_([RunStatus.RUNNING, RunStatus.CANCELLING]))
    ).all()
    session.rollback()
    requeued: list[Run] = []
    for run_id in active:

        def decide(run: Run, now: datetime) -> runs.Change | None:
            if run.status not in (RunStatus.RUNNING, RunStatus.CANCELLING):
                return None
            lost = runs.owner_lost(run, now, settings.heartbeat_timeout_s)
            if lost is None:
                return None
            if run.status == RunStatus.CANCELLING:
                return runs.end_cancelled(f"{lost} while it was being cancelled", now)
            limit = time_limits(run, settings).run
            ran = (now - run.claimed_at).total_seconds() if run.claimed_at else 0.0
            if ran >= limit:
                # It reached its limit and its worker died before saying so; a new attempt
                # would get the same limit again.
                error = (
                    f"time limit reached: the attempt ran {ran:.0f} s, past its {limit:.0f} s "
                    f"limit, and its worker is gone ({lost}). Retry resumes from the last "
                    "checkpoint."
                )
                values = {"error": error, "finished_at": now, "eta_s": None}
                return runs.Change(RunStatus.FAILED, error, values, level="ERROR")
            if run.recoveries >= settings.max_recoveries:
                return runs.gave_up(run, lost, now)
            return runs.Change(
                RunStatus.QUEUED,
                f"{lost}; re-queued to resume from its last checkpoint",
                {**runs.requeued_values(now), "recoveries": run.recoveries + 1},
                level="WARNING",
            )

        run, changed = runs.apply(session, run_id, decide, source="reconciler")
        if not changed or run is None:
            continue
        {
            RunStatus.QUEUED: report.requeued,
            RunStatus.CANCELLED: report.cancelled,
            RunStatus.FAILED: report.failed,
        }[RunStatus(run.status)].append(run.id)
        if run.status == RunStatus.QUEUED:
            requeued.append(run)
    return requeued


def find_lost_messages(
    session: Session, queue: RunQueue, settings: Settings, now: datetime
) -> list[Run]:
    """Step 2: queued runs sent long enough ago with no live message on the broker."""
    # The broker first, SQL second: a run claimed in between is no longer queued in SQL,
    # while the other order would take a run whose message was just consumed as lost.
    pending = queue.pending_run_ids(held_within_s=settings.resend_after_s)
    if pending is None:
        return []
    queued = session.scalars(select(Run).where(Run.status == RunStatus.QUEUED)).all()
    lost = []
    for run in queued:
        last = run.sent_at or run.queued_at or run.created_at
        if run.id not in pending and (now - last).total_seconds() >= settings.resend_after_s:
            lost.append(run)
    return lost


def reconcile_once(session: Session, queue: RunQueue, settings: Settings) -> Report:
    report = Report()
    to_send = recover_lost_workers(session, settings, report)
    lost = find_lost_messages(session, queue, settings, utcnow())
    for run in lost:
        add_log(
            session,
            run.id,
            "the run queue holds no live message for this queued run (Redis restarted "
            "without its data or was flushed, or the worker that took the message is "
            "gone); sending it again",
            level="WARNING",
            source="reconciler",
            attempt=run.attempt,
        )
    session.commit()
    sent = send_runs(session, queue, [*to_send, *lost], settings, source="reconciler")
    # send_runs goes in order and stops at the first failure: the first ``sent`` went out.
    report.resent = [run.id for run in lost][: max(0, sent - len(to_send))]
    if report:
        log.warning("reconciled: %s", report)
    return report


def take_turn(settings: Settings, period_s: float) -> bool:
    """Whether this reconciler runs now (no other one ran within ``period_s``)."""
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        ttl_ms = max(1, int(period_s * 900))  # expires just before the next turn is due
        return bool(client.set(LOCK_KEY, uuid.uuid4().hex, nx=True, px=ttl_ms))
    except redis.RedisError:
        return True  # SQL-side recovery needs no broker; sending will wait for it
    finally:
        client.close()


class ReconcilerThread(threading.Thread):
    """``reconcile_once`` every ``interval`` seconds until ``stop()``."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        queue: RunQueue,
        settings: Settings,
        interval: float,
    ) -> None:
        super().__init__(name="tapfl-reconciler", daemon=True)
        self.sessions, self.queue, self.settings, self.interval = (
            sessions,
            queue,
            settings,
            interval,
        )
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                if take_turn(self.settings, self.interval):
                    with self.sessions() as session:
                        reconcile_once(session, self.queue, self.settings)
            except Exception:  # the database may be restarting: try again next time
                log.exception("reconciling failed; trying again in %.0f s", self.interval)

    def stop(self, timeout: float = 10) -> None:
        self._stopping.set()
        self.join(timeout)
