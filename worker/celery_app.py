"""The Celery app of the workers: ``celery -A worker.celery_app:app worker -Q cpu,gpu``.

Runs are long and expensive, so a message is acknowledged only after its run has ended
(a worker that dies mid-run leaves the message to be re-delivered, and the run resumes
from its checkpoint) and a worker takes one message at a time.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_process_init

from backend.db import dispose_engines, upgrade_database
from backend.queue import celery_config
from backend.settings import get_settings

_settings = get_settings()
assert _settings.redis_url is not None

app = Celery("tapfl", include=["worker.tasks"])
app.conf.update(
    celery_config(_settings.redis_url),
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    # A fresh child process per run hands back GPU memory and anything the engine leaks.
    worker_max_tasks_per_child=1,
    worker_hijack_root_logger=False,
)


@worker_init.connect
def _migrate(**_: Any) -> None:
    # Before any child starts, so that runs never meet an old schema.
    settings = get_settings()
    assert settings.database_url is not None
    upgrade_database(settings.database_url)


@worker_process_init.connect
def _forget_parent_connections(**_: Any) -> None:
    # Pooled connections must not be shared across fork.
    dispose_engines(close=False)
