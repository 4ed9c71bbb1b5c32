"""Sending queued runs to the broker, with the time limits of each run."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy.orm import Session

from backend.models import Run
from backend.queue import RunQueue
from backend.services import runs
from backend.services.run_logs import add_log
from backend.settings import MIN_RUN_TIME_LIMIT_S, Settings

log = logging.getLogger(__name__)


def time_limits(run: Run, settings: Settings) -> tuple[float, float]:
    """(soft, hard) seconds for one attempt: the soft limit ends the run as failed with a
    reason; the hard one kills a process that did not stop after the soft one."""
    # The floor holds for rows stored before there was one (a limit of 0.01 s killed
    # the run before it started).
    soft = max(run.time_limit_s or settings.run_time_limit_s, MIN_RUN_TIME_LIMIT_S)
    return soft, soft + settings.run_kill_grace_s


def send_runs(
    session: Session, queue: RunQueue, to_send: Sequence[Run], settings: Settings, source: str
) -> int:
    """Send a message for each run; returns how many went out.

    A run whose message cannot be sent stays ``queued`` (SQL is the truth): the reconciler
    sends it once the broker answers again. After the first failure the others are not
    tried, so a sweep does not wait for the broker's timeout once per run.
    """
    for sent, run in enumerate(to_send):
        soft, hard = time_limits(run, settings)
        try:
            task_id = queue.enqueue(run.id, run.config.get("device", "auto"), soft, hard)
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
