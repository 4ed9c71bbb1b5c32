from __future__ import annotations

from backend.queue import RUN_TASK, VISIBILITY_TIMEOUT_S
from worker.celery_app import app


def test_the_worker_acknowledges_a_run_only_after_it_ends_and_takes_one_at_a_time() -> None:
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] == VISIBILITY_TIMEOUT_S
    assert VISIBILITY_TIMEOUT_S >= 24 * 3600
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert {(q.name, q.exchange.name, q.routing_key) for q in conf.task_queues} == {
        ("cpu", "cpu", "cpu"),
        ("gpu", "gpu", "gpu"),
    }


def test_the_run_task_is_registered_under_the_name_the_api_sends() -> None:
    app.loader.import_default_modules()
    assert RUN_TASK in app.tasks
