"""Sending runs to the workers: a Celery *client* that never imports ``worker/``.

A message only says "run N may start"; SQL holds the run itself. Runs that want a GPU go
to the ``gpu`` queue, all others to ``cpu``, so CPU-only workers never take a GPU run.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Protocol

from celery import Celery
from kombu import Exchange, Queue

RUN_TASK = "tapfl.run"
CPU_QUEUE = "cpu"
GPU_QUEUE = "gpu"
# Longer than any run: with late acks, Redis re-delivers a message not acknowledged
# within this time, which would start a second copy of a still running run.
VISIBILITY_TIMEOUT_S = 7 * 24 * 3600


def celery_config(broker_url: str) -> dict[str, Any]:
    """Settings both sides of the queue must agree on (the worker adds its own)."""
    return {
        "broker_url": broker_url,
        "broker_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT_S},
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,
        # Each queue its own exchange and key: a bare Queue(name) would be bound to the
        # default queue's exchange and key, and every message would reach both queues.
        "task_queues": tuple(Queue(q, Exchange(q), routing_key=q) for q in (CPU_QUEUE, GPU_QUEUE)),
        "task_default_queue": CPU_QUEUE,
    }


def queue_for(device: str) -> str:
    return GPU_QUEUE if device == "cuda" else CPU_QUEUE


class RunQueue(Protocol):
    def enqueue(self, run_id: int, device: str) -> None: ...


class CeleryRunQueue:
    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url
        self._app = Celery("tapfl-client", set_as_current=False)
        self._app.conf.update(celery_config(broker_url))

    def enqueue(self, run_id: int, device: str) -> None:
        # A short retry: a request should fail fast when Redis is down, not hang.
        self._app.send_task(
            RUN_TASK,
            args=[run_id],
            queue=queue_for(device),
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )


@lru_cache
def celery_run_queue(broker_url: str) -> CeleryRunQueue:
    """One client (and connection pool) per broker for the life of the process."""
    return CeleryRunQueue(broker_url)
