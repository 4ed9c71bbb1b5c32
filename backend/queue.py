"""Sending runs to the workers: a Celery *client* that never imports ``worker/``.

A message only says "run N may start"; SQL holds the run itself, so a duplicate message is
harmless (the claim in SQL decides) and a lost one is sent again by the reconciler, which
reads what the broker holds with ``pending_run_ids``. Runs that want a GPU go to the
``gpu`` queue, all others to ``cpu``, so CPU-only workers never take a GPU run.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from functools import lru_cache
from typing import Any, Protocol

import redis
from celery import Celery
from kombu import Exchange, Queue

from backend.settings import VISIBILITY_TIMEOUT_S as VISIBILITY_TIMEOUT_S  # re-exported
from backend.settings import get_settings

log = logging.getLogger(__name__)

RUN_TASK = "tapfl.run"
CPU_QUEUE = "cpu"
GPU_QUEUE = "gpu"
QUEUES = (CPU_QUEUE, GPU_QUEUE)

# Where kombu's Redis transport keeps messages: one list per queue and priority, and the
# messages that workers hold unacknowledged (with late acks: the runs being run), with the
# time each was taken. An entry outlives its worker: a worker killed with its message, or
# a Redis restored from its append-only file, leaves it there for the visibility timeout.
_PRIORITY_SEPARATOR = "\x06\x16"
_UNACKED_KEY = "unacked"
_UNACKED_INDEX_KEY = "unacked_index"  # delivery tag -> when a worker took it


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
        "task_queues": tuple(Queue(q, Exchange(q), routing_key=q) for q in QUEUES),
        "task_default_queue": CPU_QUEUE,
    }


def queue_for(device: str) -> str:
    return GPU_QUEUE if device == "cuda" else CPU_QUEUE


class RunQueue(Protocol):
    def enqueue(self, run_id: int, device: str, soft_time_limit: float, time_limit: float) -> str:
        """Send "run N may start"; returns the message's task id."""
        ...

    def pending_run_ids(self, held_within_s: float | None = None) -> set[int] | None:
        """Runs the broker holds a message for; None: unknown.

        Messages waiting in a queue always count; one a worker took (and holds until the
        run ends) counts only if it was taken less than ``held_within_s`` ago (None: any).
        """
        ...


class CeleryRunQueue:
    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url
        self._app = Celery("tapfl-client", set_as_current=False)
        self._app.conf.update(celery_config(broker_url))
        # One broker connection per request served at once: none waits for another's.
        self._app.conf.broker_pool_limit = get_settings().api_concurrency

    def enqueue(self, run_id: int, device: str, soft_time_limit: float, time_limit: float) -> str:
        # A short retry: a request should fail fast when Redis is down, not hang.
        result = self._app.send_task(
            RUN_TASK,
            args=[run_id],
            queue=queue_for(device),
            soft_time_limit=soft_time_limit,
            time_limit=time_limit,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5},
        )
        return str(result.id)

    def pending_run_ids(self, held_within_s: float | None = None) -> set[int] | None:
        client = redis.Redis.from_url(self.broker_url, socket_connect_timeout=2, socket_timeout=10)
        try:
            raw: list[bytes] = []
            for queue in QUEUES:
                keys = [queue, *(f"{queue}{_PRIORITY_SEPARATOR}{p}" for p in range(1, 10))]
                for key in keys:
                    raw.extend(client.lrange(key, 0, -1))
            held = client.hgetall(_UNACKED_KEY)
            taken_at = dict(client.zrange(_UNACKED_INDEX_KEY, 0, -1, withscores=True))
        except redis.RedisError as exc:
            log.warning("cannot read the run queue at %s: %s", self.broker_url, exc)
            return None
        finally:
            client.close()
        now = time.time()
        unacked = [
            json.loads(value)[0]
            for tag, value in held.items()
            if held_within_s is None or now - taken_at.get(tag, 0.0) < held_within_s
        ]
        messages = [json.loads(m) for m in raw] + unacked
        return {run_id for m in messages if (run_id := _run_id(m)) is not None}


def _run_id(message: dict[str, Any]) -> int | None:
    """The run id of a ``tapfl.run`` message in kombu's envelope; None for anything else."""
    try:
        if message.get("headers", {}).get("task") != RUN_TASK:
            return None
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return int(args[0])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


@lru_cache
def celery_run_queue(broker_url: str) -> CeleryRunQueue:
    """One client (and connection pool) per broker for the life of the process."""
    return CeleryRunQueue(broker_url)
