from __future__ import annotations

import base64
import json
import time

import pytest
import redis

from backend.queue import CPU_QUEUE, GPU_QUEUE, RUN_TASK, CeleryRunQueue, queue_for
from backend.settings import get_settings
from tests.backend.conftest import Api


def test_health_is_503_degraded_when_redis_is_down(api: Api) -> None:
    response = api.client.get("/api/v1/health")
    assert response.status_code == 503
    assert response.json() == {"status": "degraded", "database": True, "redis": False}


def test_health_is_ok_with_a_real_redis(
    api: Api, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "redis_url", redis_url)
    response = api.client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": True, "redis": True}


def test_only_cuda_runs_go_to_the_gpu_queue() -> None:
    assert queue_for("cuda") == GPU_QUEUE
    assert queue_for("cpu") == queue_for("auto") == CPU_QUEUE


def test_the_celery_client_puts_a_run_message_on_the_queue_of_its_device(redis_url: str) -> None:
    broker = redis.Redis.from_url(redis_url)
    broker.delete(CPU_QUEUE, GPU_QUEUE)
    queue = CeleryRunQueue(redis_url)
    # The third message is sent once both queues are declared, as they are by a worker.
    for run_id, device in ((17, "cuda"), (18, "auto"), (19, "cuda"), (20, "cpu")):
        queue.enqueue(run_id, device, 60, 90)
    assert _run_ids(broker, GPU_QUEUE) == [17, 19]
    assert _run_ids(broker, CPU_QUEUE) == [18, 20]
    [message] = [json.loads(m) for m in broker.lrange(CPU_QUEUE, 0, 0)]
    assert message["headers"]["timelimit"] == [90, 60]  # hard, soft: enforced by the worker
    broker.delete(CPU_QUEUE, GPU_QUEUE)


def test_pending_run_ids_sees_waiting_messages_and_those_a_worker_holds(redis_url: str) -> None:
    broker = redis.Redis.from_url(redis_url)
    broker.delete(CPU_QUEUE, GPU_QUEUE, "unacked")
    queue = CeleryRunQueue(redis_url)
    for run_id, device in ((31, "cpu"), (32, "cuda"), (33, "cpu")):
        queue.enqueue(run_id, device, 60, 90)
    assert queue.pending_run_ids() == {31, 32, 33}

    # A worker takes a message without acknowledging it (late acks: it is running the run).
    with queue._app.connection() as connection:
        held = connection.default_channel.basic_get(CPU_QUEUE, no_ack=False)
        assert held is not None and json.loads(held.body)[0] == [31]
        assert broker.hlen("unacked") == 1 and broker.llen(CPU_QUEUE) == 1
        assert queue.pending_run_ids() == {31, 32, 33}
        held.ack()
    assert queue.pending_run_ids() == {32, 33}

    broker.flushdb()  # what a Redis restart without its data looks like to the reconciler
    assert queue.pending_run_ids() == set()
    broker.lpush(CPU_QUEUE, json.dumps({"headers": {"task": "other.task"}, "body": "x"}))
    assert queue.pending_run_ids() == set()  # foreign messages are no runs
    broker.delete(CPU_QUEUE)


def test_a_message_held_longer_than_a_claim_takes_no_longer_counts(redis_url: str) -> None:
    broker = redis.Redis.from_url(redis_url)
    broker.delete(CPU_QUEUE, GPU_QUEUE, "unacked", "unacked_index")
    queue = CeleryRunQueue(redis_url)
    queue.enqueue(41, "cpu", 60, 90)
    with queue._app.connection() as connection:
        held = connection.default_channel.basic_get(CPU_QUEUE, no_ack=False)
        assert held is not None
        assert queue.pending_run_ids(held_within_s=30) == {41}
        [tag] = broker.zrange("unacked_index", 0, -1)
        broker.zadd("unacked_index", {tag: time.time() - 31})  # taken 31 s ago
        assert queue.pending_run_ids(held_within_s=30) == set()
        assert queue.pending_run_ids() == {41}  # without a bound: every held message
        held.ack()


def test_pending_run_ids_is_unknown_when_redis_is_down() -> None:
    from backend.processes import free_port

    assert CeleryRunQueue(f"redis://127.0.0.1:{free_port()}/0").pending_run_ids() is None


def _run_ids(broker: redis.Redis, queue: str) -> list[int]:
    ids = []
    for raw in reversed(broker.lrange(queue, 0, -1)):  # kombu pushes on the left
        message = json.loads(raw)
        assert message["headers"]["task"] == RUN_TASK
        assert message["content-type"] == "application/json"
        [run_id] = json.loads(_body(message))[0]
        ids.append(run_id)
    return ids


def _body(message: dict) -> str:
    return base64.b64decode(message["body"]).decode()
