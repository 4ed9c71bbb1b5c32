"""Dropping stale messages in the worker's main process, before any run process starts.

Every run gets a fresh pool process (``worker_max_tasks_per_child=1``), and starting one
costs seconds. A message for a run that was cancelled, has ended, or that a live worker
already runs would still cost that much were it handed to the pool, so the main process
reads the run's status in SQL first and acknowledges such a message at once. Any doubt
(an unreadable message, a database that does not answer) hands the message to the pool,
where ``claim_run`` decides as before.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery.worker.strategy import default as default_strategy

from backend.db import session_factory
from backend.models import utcnow
from backend.services import runs
from backend.settings import get_settings

log = logging.getLogger(__name__)

DROPPED = "run %s: message dropped before starting a process: %s"
"""The log line of a dropped message (tests count them)."""


def run_id_of(message: Any) -> int | None:
    """The run id of a ``tapfl.run`` message (protocol 2: ``[args, kwargs, embed]``)."""
    try:
        args = message.decode()[0]
        return int(args[0])
    except Exception:  # a malformed message goes to the pool, which reports it
        return None


def stale_reason(run_id: int) -> str | None:
    """Why the message for ``run_id`` is stale; None: start it (or SQL cannot tell)."""
    settings = get_settings()
    try:
        with session_factory()() as session:
            run = runs.fresh(session, run_id)
            return runs.stale_message(run, utcnow(), settings.heartbeat_timeout_s)
    except Exception as exc:
        log.warning("run %s: cannot read its status (%s); handing it to the pool", run_id, exc)
        return None


def strategy(task: Any, app: Any, consumer: Any, **kwargs: Any) -> Callable[..., Any]:
    """Celery's default strategy behind a status check (the task's ``Strategy``)."""
    handle = default_strategy(task, app, consumer, **kwargs)
    connection_errors = consumer.connection_errors

    def on_message(
        message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kw: Any
    ) -> Any:
        run_id = run_id_of(message)
        reason = stale_reason(run_id) if run_id is not None else None
        if reason is None:
            return handle(message, body, ack, reject, callbacks, **kw)
        log.info(DROPPED, run_id, reason)
        ack(log, connection_errors)
        return None

    return on_message
