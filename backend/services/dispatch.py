"""Sending queued runs to the broker, with the time limits of each run."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from backend.models import Run
from backend.queue import RunQueue
from backend.services import runs
from backend.services.run_logs import add_log
from backend.settings import MIN_RUN_TIME_LIMIT_S, Settings

log = logging.getLogger(__name__)


# Celery's soft limit follows the run's own by this much. The run checks its limit between
# steps and evaluations and fails at it; Celery's timer is the backstop for a phase that
# checks nothing (loading data, building the model), and for a run whose check failed.
# Were both at the same instant, Celery's signal could land while the run records its end.
SOFT_LIMIT_SLACK_S = 60.0


@dataclass(frozen=True)
class TimeLimits:
    """Seconds one attempt may take, from the time its worker starts it."""

    run: float  # the run fails once it has run this long: the limit a user sets
    soft: float  # Celery interrupts the run's process, wherever it is
    hard: float  # Celery kills the process that did not stop after ``soft``


def time_limits(run: Run, settings: Settings) -> TimeLimits:
    # The floor holds for rows stored before there was one (a limit of 0.01 s killed
    # the run before it started).
    limit = max(run.time_limit_s or settings.run_time_limit_s, MIN_RUN_TIME_LIMIT_S)
    soft = limit + SOFT_LIMIT_SLACK_S
    return TimeLimits(limit, soft, soft + settings.run_kill_grace_s)


def send_runs(
    session: Session, queue: RunQueue, to_send: Sequence[Run], settings: Settings, source: str
) -> int:
    """Send a message for each run; returns how many went out.

    A run whose message cannot be sent stays ``queued`` (SQL is the truth): the reconciler
    sends it once the broker answers again. After the first failure the others are not
    tried, so a sweep does not wait for the broker's timeout once per run.
    """
    for sent, run in enumerate(to_send):
        limits = time_limits(run, settings)
        device = run.config.get("device", "auto")
        try:
            task_id = queue.enqueue(run.id, device, limits.soft, limits.hard)
        except Exception as exc:
            log.warning(
                "run queue unreachable; %d run(s) stay queued: %s", len(to_send) - sent, exc
            )
            for waiting in to_send[sent:]:
                add_log(
                    session,
                    waiting.id,
                    f"the run queue is unreachable ({type(exc).__name__}: {exc}); the run "
                    "stays queued and is sent as soon as the queue answers again",
                    level="WARNING",
                    source=source,
                    attempt=waiting.attempt,
                )
            session.commit()
            return sent
        runs.mark_sent(session, run.id, task_id)
    return len(to_send)
