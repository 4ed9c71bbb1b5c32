"""The Celery app of the workers: ``celery -A worker.celery_app:app worker -Q cpu,gpu``
(or ``tapfl worker``, which starts one such worker per GPU).

Runs are long and expensive, so a message is acknowledged only after its run has ended
(a worker that dies mid-run leaves the message to be re-delivered, and the run resumes
from its checkpoint), a worker takes one message at a time, and each run gets a fresh
process. A worker asked to shut down does not wait hours for its run: it asks the run to
stop after the current local step, and the run goes back to the queue to resume elsewhere.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import threading
from typing import Any

import billiard.process
from celery import Celery
from celery.exceptions import TimeLimitExceeded
from celery.signals import (
    task_failure,
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutting_down,
)

from backend.db import dispose_engines, session_factory, upgrade_database
from backend.queue import RUN_TASK, celery_config
from backend.services import runs
from backend.settings import get_settings

log = logging.getLogger(__name__)

# Sent by the worker's main process to its pool processes when it shuts down.
PREEMPT_SIGNAL = signal.SIGUSR2
PREEMPT = threading.Event()
"""Set in a process whose worker is shutting down: its run stops and is re-queued."""

_settings = get_settings()

app = Celery("tapfl", include=["worker.tasks"])
app.conf.update(
    celery_config(_settings.redis_url),
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # A fresh child process per run hands back GPU memory and anything the engine leaks.
    worker_max_tasks_per_child=1,
    worker_hijack_root_logger=False,
    # What a run prints (libraries' progress bars, say) is information, not a warning; real
    # warnings come through ``warnings`` and logging with their own level.
    worker_redirect_stdouts_level="INFO",
    # The time limits come with each message (from the run, see backend.services.dispatch).
    task_time_limit=None,
    task_soft_time_limit=None,
    # Events for Celery Flower (queue and worker monitoring in compose).
    worker_send_task_events=True,
    task_send_sent_event=True,
)


@worker_init.connect
def _migrate(**_: Any) -> None:
    # Before any child starts, so that runs never meet an old schema.
    settings = get_settings()
    upgrade_database(settings.database_url)


_preloaded_s: float | None = None


@worker_init.connect
def _preload(**_: Any) -> None:
    # Before the pool forks: each run's fresh child inherits the imports instead of paying
    # for them at its start and at its first evaluation.
    global _preloaded_s
    if not get_settings().worker_preload:
        return
    from tap_engine.preload import import_run_libraries

    _preloaded_s = import_run_libraries()
    # What the children inherit leaves their collector's sight: a full collection in a run
    # would otherwise walk, and so copy, every page of it (Python's advice for fork
    # without exec) while holding the GIL its heartbeat thread needs.
    gc.freeze()


@worker_ready.connect
def _report_preload(**_: Any) -> None:
    # Logged here: Celery sets its logging up after worker_init.
    if _preloaded_s is not None:
        log.info("imported the runs' libraries before the pool started, in %.2f s", _preloaded_s)


@worker_process_init.connect
def _init_pool_process(**_: Any) -> None:
    # Pooled connections must not be shared across fork.
    dispose_engines(close=False)
    signal.signal(PREEMPT_SIGNAL, lambda *_: PREEMPT.set())


@worker_shutting_down.connect
def _preempt_runs(**_: Any) -> None:
    """On SIGTERM/SIGINT: the running runs stop after their current step and re-queue."""
    PREEMPT.set()  # a solo or threads pool runs tasks in this very process
    for child in billiard.process.active_children():
        if child.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, PREEMPT_SIGNAL)


@task_failure.connect
def _hard_time_limit(
    sender: Any = None,
    task_id: str | None = None,
    exception: Any = None,
    args: Any = None,
    **_: Any,
) -> None:
    """The pool killed a run's process at its hard time limit: the run failed."""
    if not isinstance(exception, TimeLimitExceeded) or getattr(sender, "name", None) != RUN_TASK:
        return
    run_id = int(args[0]) if args else None
    if run_id is None or task_id is None:
        return
    limit = exception.args[0] if exception.args else "its"
    error = (
        f"time limit reached: the run did not stop within {limit} s and its process was "
        "killed. Retry resumes from the last checkpoint."
    )
    try:
        with session_factory()() as session:
            runs.fail_task(session, run_id, task_id, error)
    except Exception:
        log.exception("run %s: could not record its hard time limit", run_id)
