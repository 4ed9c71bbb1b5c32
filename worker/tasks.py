"""The one task: claim a run by id, run the engine on it, record how it ended.

Everything about the lifecycle (who may run it, what each ending means) is in
``backend.services.runs``; this module only connects the engine to it.
"""

from __future__ import annotations

import socket
import time
import traceback
from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.log import get_task_logger
from pydantic import ValidationError
from sqlalchemy.orm import Session, sessionmaker

from backend.db import session_factory
from backend.models import RunStatus
from backend.queue import RUN_TASK, celery_run_queue
from backend.services import runs
from backend.services.dispatch import send_runs, time_limits
from backend.settings import Settings, get_settings
from tap_engine import runner
from tap_engine.config import RunConfig
from worker.celery_app import PREEMPT, app
from worker.runtime import RunRuntime
from worker.sql_observer import SqlObserver, StopCheck

log = get_task_logger(__name__)

TRACEBACK_LINES = 25
MAX_ERROR_CHARS = 8000


# The strategy runs in the worker's main process: stale messages never reach the pool.
@app.task(name=RUN_TASK, bind=True, Strategy="worker.stale:strategy")
def run(self, run_id: int) -> str:  # type: ignore[no-untyped-def]
    """Returns how the run ended (for the worker log; nothing reads a result)."""
    return execute(run_id, task_id=self.request.id, node=self.request.hostname)


@dataclass
class Outcome:
    status: str  # succeeded, cancelled, failed, preempted or abandoned
    rounds: int = 0
    error: str = ""


def execute(run_id: int, task_id: str | None = None, node: str | None = None) -> str:
    started = time.monotonic()  # Celery's limits count from here too
    settings = get_settings()
    sessions = session_factory()
    owner = runs.Owner.current(node or socket.gethostname())
    try:
        with sessions() as session:
            claimed = runs.claim_run(
                session,
                run_id,
                owner,
                task_id=task_id,
                heartbeat_timeout_s=settings.heartbeat_timeout_s,
                max_recoveries=settings.max_recoveries,
            )
            if claimed is None:
                log.info("run %s not started: %s", run_id, _why_not(session, run_id))
                return "skipped"
            attempt, stored_config = claimed.attempt, claimed.config
            time_limit = time_limits(claimed, settings).run
    except SoftTimeLimitExceeded:
        # Out of time while claiming: the run fails here. Left queued (or running without
        # a worker), the reconciler would send it again, and it would run out again.
        return _out_of_time_unclaimed(run_id, task_id, sessions)

    runtime = RunRuntime(
        run_id, attempt, sessions, settings.heartbeat_interval_s, settings.run_log_level
    )
    try:
        runtime.start()
        outcome = _run_engine(
            run_id, attempt, stored_config, (time_limit, started), sessions, settings, runtime
        )
    except SoftTimeLimitExceeded:  # in the setup around the engine, before its own handler
        outcome = Outcome("failed", error=time_limit_error(run_id, time_limit))
    finally:
        runtime.stop()  # the run's last log lines go in before its final status
    return _record(run_id, attempt, outcome, owner, sessions, settings)


def time_limit_error(run_id: int, time_limit: float) -> str:
    error = (
        f"time limit reached: the attempt ran for its {time_limit:.0f} s limit and was "
        "stopped. Retry resumes from the last checkpoint; the limit is the experiment's "
        "time_limit_s or the server's TAPFL_RUN_TIME_LIMIT_S."
    )
    log.error("run %s: %s", run_id, error)
    return error


def _out_of_time_unclaimed(
    run_id: int, task_id: str | None, sessions: sessionmaker[Session]
) -> str:
    error = (
        "time limit reached before the run started: the attempt's time limit ran out while "
        "the worker was taking the run. Retry to run it again."
    )
    log.error("run %s: %s", run_id, error)
    if task_id is not None:
        with sessions() as session:
            if runs.fail_task(session, run_id, task_id, error):
                return "failed"
    return "abandoned"


def _why_not(session: Session, run_id: int) -> str:
    run = runs.fresh(session, run_id)
    if run is None:
        return "no such run"
    if run.status in (RunStatus.RUNNING, RunStatus.CANCELLING):
        return f"{run.worker} runs it (a duplicate message)"
    return f"it is {run.status}"


def _run_engine(
    run_id: int,
    attempt: int,
    stored_config: dict,
    limit: tuple[float, float],  # (seconds, the monotonic time they count from)
    sessions: sessionmaker[Session],
    settings: Settings,
    runtime: RunRuntime,
) -> Outcome:
    try:
        config = RunConfig.model_validate(stored_config)
    except ValidationError as exc:
        context = "the stored config does not validate with this engine version"
        log.error("run %s: %s", run_id, context, exc_info=exc)
        return Outcome("failed", error=describe_failure(exc, context))

    workdir = settings.runs_dir / str(run_id)
    workdir.mkdir(parents=True, exist_ok=True)
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    with sessions() as session:
        runs.set_workdir(session, run_id, str(workdir))

    log.info(
        "run %s (attempt %s): %s, preset %s, seed %s, device %s, in %s",
        run_id,
        attempt,
        config.algorithm,
        config.preset,
        config.seed,
        config.device,
        workdir,
    )
    time_limit, started = limit
    should_stop = StopCheck(
        run_id,
        sessions,
        settings.stop_poll_s,
        attempt=attempt,
        preempt=PREEMPT,
        lost=runtime.lost,
        deadline=started + time_limit,
    )
    try:
        # Every run shares the cache, so the runs of a sweep preprocess their data once.
        result = runner.run(
            config,
            SqlObserver(run_id, sessions, attempt),
            workdir=workdir,
            should_stop=should_stop,
            cache_dir=settings.cache_dir,
            state_memory_budget_mb=settings.state_memory_budget_mb,
        )
    except SoftTimeLimitExceeded:
        return Outcome("failed", error=time_limit_error(run_id, time_limit))
    except Exception as exc:  # bad data, bad model path, a bug: the run fails, the worker goes on
        log.error("run %s failed", run_id, exc_info=exc)
        return Outcome("failed", error=describe_failure(exc))

    if result.status == "succeeded":
        return Outcome("succeeded", result.rounds_completed)
    if should_stop.reason == "time_limit":
        return Outcome("failed", error=time_limit_error(run_id, time_limit))
    ending = {"cancel": "cancelled", "preempt": "preempted"}.get(should_stop.reason or "cancel")
    return Outcome(ending or "abandoned", result.rounds_completed)


def _record(
    run_id: int,
    attempt: int,
    outcome: Outcome,
    owner: runs.Owner,
    sessions: sessionmaker[Session],
    settings: Settings,
) -> str:
    with sessions() as session:
        match outcome.status:
            case "succeeded" | "cancelled":
                done = runs.finish_run(
                    session, run_id, attempt, RunStatus(outcome.status), outcome.rounds
                )
            case "failed":
                done = runs.fail_run(session, run_id, attempt, outcome.error)
            case "preempted":
                reason = (
                    f"{owner.name} is shutting down; the run stopped after round "
                    f"{outcome.rounds} and goes back to the queue to resume from there"
                )
                done = runs.requeue_run(session, run_id, attempt, reason)
                run = runs.fresh(session, run_id)
                if done and run is not None:
                    queue = celery_run_queue(settings.redis_url)
                    send_runs(session, queue, [run], settings, source="worker")
            case _:
                done = False
    if not done:
        log.warning(
            "run %s no longer belongs to attempt %s (taken over or ended elsewhere); "
            "this attempt's ending (%s) is not recorded",
            run_id,
            attempt,
            outcome.status,
        )
        return "abandoned"
    log.info("run %s %s", run_id, outcome.status)
    return outcome.status


def describe_failure(exc: BaseException, context: str | None = None) -> str:
    """A reason a person can read, then the end of the traceback for whoever debugs it."""
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if context:
        reason = f"{context}: {reason}"
    lines = "".join(traceback.format_exception(exc)).splitlines()
    tail = "\n".join(lines[-TRACEBACK_LINES:])
    text = f"{reason}\n\nTraceback (last {TRACEBACK_LINES} lines):\n{tail}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."
