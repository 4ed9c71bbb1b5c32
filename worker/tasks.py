"""The one task: run a run by id and record how it ended."""

from __future__ import annotations

import traceback

from celery.utils.log import get_task_logger
from pydantic import ValidationError

from backend.db import session_factory
from backend.models import RunStatus
from backend.queue import RUN_TASK
from backend.services import runs
from backend.settings import get_settings
from tap_engine import runner
from tap_engine.config import RunConfig
from worker.celery_app import app
from worker.sql_observer import SqlObserver, StopCheck

log = get_task_logger(__name__)

TRACEBACK_LINES = 25
MAX_ERROR_CHARS = 8000


@app.task(name=RUN_TASK)
def run(run_id: int) -> str:
    """Returns the run's final status (for the worker log; nothing reads a result)."""
    return execute(run_id)


def execute(run_id: int) -> str:
    settings = get_settings()
    sessions = session_factory()
    with sessions() as session:
        claimed = runs.claim_run(session, run_id)
        if claimed is None:
            log.info("run %s is gone, finished or cancelled: not started", run_id)
            return "skipped"
        stored_config = claimed.config
    try:
        config = RunConfig.model_validate(stored_config)
    except ValidationError as exc:
        return _fail(run_id, exc, "the stored config does not validate with this engine version")

    assert settings.runs_dir is not None
    workdir = settings.runs_dir / str(run_id)
    workdir.mkdir(parents=True, exist_ok=True)
    with sessions() as session:
        runs.set_workdir(session, run_id, str(workdir))

    log.info("run %s: %s, preset %s, seed %s", run_id, config.algorithm, config.preset, config.seed)
    try:
        result = runner.run(
            config,
            SqlObserver(run_id, sessions),
            workdir=workdir,
            should_stop=StopCheck(run_id, sessions),
        )
    except Exception as exc:  # bad data, bad model path, a bug: the run fails, the worker goes on
        return _fail(run_id, exc)
    status = RunStatus(result.status)
    with sessions() as session:
        runs.finish_run(session, run_id, status)
    log.info("run %s %s", run_id, status)
    return status


def _fail(run_id: int, exc: BaseException, context: str | None = None) -> str:
    log.error("run %s failed", run_id, exc_info=exc)
    with session_factory()() as session:
        runs.fail_run(session, run_id, describe_failure(exc, context))
    return RunStatus.FAILED


def describe_failure(exc: BaseException, context: str | None = None) -> str:
    """A reason a person can read, then the end of the traceback for whoever debugs it."""
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if context:
        reason = f"{context}: {reason}"
    lines = "".join(traceback.format_exception(exc)).splitlines()
    tail = "\n".join(lines[-TRACEBACK_LINES:])
    text = f"{reason}\n\nTraceback (last {TRACEBACK_LINES} lines):\n{tail}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."
