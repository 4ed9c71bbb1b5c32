"""The reconciler on a real SQLite database, with a fake broker whose contents the tests
control (and a real Redis for the lock between reconcilers)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from backend.models import Run, RunLog, RunTransition, utcnow
from backend.queue import CeleryRunQueue
from backend.services import reconciler, runs
from backend.services.leases import Lease
from backend.settings import Settings
from tests.backend.conftest import FakeQueue, add_run

ELSEWHERE = Lease("gpu-box", "another-boot", "pid:[1]", 4242, "123").encode()


@pytest.fixture
def tuned(settings: Settings) -> Settings:
    settings.heartbeat_interval_s, settings.heartbeat_timeout_s = 1.0, 30.0
    settings.resend_after_s = 20.0
    return settings


def _running(sessions: sessionmaker[Session], heartbeat_age_s: float, **values: object) -> int:
    """A run a worker on another machine claimed, last heard of ``heartbeat_age_s`` ago."""
    with sessions() as session:
        run_id = add_run(session).id
        owner = runs.Owner("gpu0@gpu-box pid 4242", ELSEWHERE)
        runs.claim_run(
            session, run_id, owner, task_id="t", heartbeat_timeout_s=30, max_recoveries=3
        )
        run = session.get(Run, run_id)
        assert run is not None
        run.heartbeat_at = utcnow() - timedelta(seconds=heartbeat_age_s)
        for key, value in values.items():
            setattr(run, key, value)
        session.commit()
        return run_id


def _reconcile(sessions: sessionmaker[Session], queue: FakeQueue, settings: Settings):
    with sessions() as session:
        return reconciler.reconcile_once(session, queue, settings)


def _get(sessions: sessionmaker[Session], run_id: int) -> Run:
    with sessions() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run


def test_a_run_whose_worker_went_silent_is_queued_and_sent_again(
    sessions: sessionmaker[Session], tuned: Settings
) -> None:
    silent = _running(sessions, heartbeat_age_s=31)
    alive = _running(sessions, heartbeat_age_s=5)
    queue = FakeQueue()
    report = _reconcile(sessions, queue, tuned)
    assert report.requeued == [silent] and queue.sent == [(silent, "auto")]
    run = _get(sessions, silent)
    state = (run.status, run.recoveries, run.worker, run.sent_at is not None)
    assert state == ("queued", 1, None, True)
    assert _get(sessions, alive).status == "running"
    with sessions() as session:
        [line] = session.scalars(
            select(RunLog.message).where(RunLog.run_id == silent, RunLog.source == "reconciler")
        ).all()
    assert "no heartbeat from gpu0@gpu-box pid 4242 for 31 s" in line
    assert "resume from its last checkpoint" in line
    # Nothing more to do the second time.
    assert not _reconcile(sessions, queue, tuned) and len(queue.sent) == 1


def test_a_silent_cancelling_run_ends_cancelled_and_one_past_its_hard_limit_fails(
    sessions: sessionmaker[Session], tuned: Settings
) -> None:
    cancelling = _running(sessions, heartbeat_age_s=60, status="cancelling")
    hard = tuned.run_time_limit_s + tuned.run_kill_grace_s
    overdue = _running(
        sessions, heartbeat_age_s=60, claimed_at=utcnow() - timedelta(seconds=hard + 1)
    )
    worn_out = _running(sessions, heartbeat_age_s=60, recoveries=tuned.max_recoveries)
    queue = FakeQueue()
    report = _reconcile(sessions, queue, tuned)
    assert report.cancelled == [cancelling] and sorted(report.failed) == [overdue, worn_out]
    assert queue.sent == []
    assert "time limit reached" in (_get(sessions, overdue).error or "")
    assert "gave up after losing its worker" in (_get(sessions, worn_out).error or "")


def test_a_lost_run_past_its_soft_limit_fails_rather_than_running_out_again(
    sessions: sessionmaker[Session], tuned: Settings
) -> None:
    # Its worker died between the soft limit and the kill: a new attempt would get the
    # same limit and end the same way, so the run fails, saying why.
    ran = utcnow() - timedelta(seconds=tuned.run_time_limit_s + 1)
    overdue = _running(sessions, heartbeat_age_s=60, claimed_at=ran)
    queue = FakeQueue()
    assert _reconcile(sessions, queue, tuned).failed == [overdue]
    assert queue.sent == []
    error = _get(sessions, overdue).error or ""
    assert error.startswith("time limit reached") and "worker is gone" in error


def test_queued_runs_the_broker_lost_are_sent_again_and_no_others(
    sessions: sessionmaker[Session], tuned: Settings
) -> None:
    queue = FakeQueue()
    long_ago = utcnow() - timedelta(seconds=60)
    with sessions() as session:
        lost, waiting, fresh = (add_run(session) for _ in range(3))
        for run in (lost, waiting, fresh):
            run.sent_at = long_ago
        fresh.sent_at = utcnow()  # sent a moment ago: its message may not be visible yet
        session.commit()
        ids = lost.id, waiting.id, fresh.id
    queue.pending = {ids[1]}  # Redis restarted without its data and lost the others
    report = _reconcile(sessions, queue, tuned)
    assert report.resent == [ids[0]] and queue.sent == [(ids[0], "auto")]
    assert queue.pending == {ids[0], ids[1]}
    assert not _reconcile(sessions, queue, tuned)  # its new message is there now


def test_nothing_is_sent_while_the_broker_cannot_be_read(
    sessions: sessionmaker[Session], tuned: Settings
) -> None:
    silent = _running(sessions, heartbeat_age_s=31)
    queue = FakeQueue(fail=True)
    report = _reconcile(sessions, queue, tuned)
    # The run still leaves the dead worker; it is sent once the broker is back.
    assert report.requeued == [silent] and report.resent == [] and queue.sent == []
    assert _get(sessions, silent).status == "queued"
    queue.fail = False
    tuned.resend_after_s = 0.05
    time.sleep(0.1)
    assert _reconcile(sessions, queue, tuned).resent == [silent]


def test_reconcilers_running_at_once_requeue_a_run_once(
    sessions: sessionmaker[Session], tuned: Settings
) -> None:
    silent = _running(sessions, heartbeat_age_s=31)
    queue = FakeQueue()
    start = threading.Barrier(4)

    def reconcile() -> reconciler.Report:
        start.wait()
        return _reconcile(sessions, queue, tuned)

    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(lambda _: reconcile(), range(4)))
    assert sorted(len(r.requeued) for r in reports) == [0, 0, 0, 1]
    assert queue.sent == [(silent, "auto")]
    with sessions() as session:
        count = session.scalar(
            select(func.count())
            .select_from(RunTransition)
            .where(RunTransition.run_id == silent, RunTransition.to_status == "queued")
        )
    assert count == 1


def test_reconcilers_take_turns_through_a_redis_lock(tuned: Settings, redis_url: str) -> None:
    import redis

    tuned.redis_url = redis_url
    redis.Redis.from_url(redis_url).delete(reconciler.LOCK_KEY)
    assert reconciler.take_turn(tuned, period_s=0.5) is True
    assert reconciler.take_turn(tuned, period_s=0.5) is False  # another replica's turn is on
    time.sleep(0.5)
    assert reconciler.take_turn(tuned, period_s=0.5) is True


def test_the_reconciler_thread_recovers_runs_on_its_own(
    sessions: sessionmaker[Session], tuned: Settings
) -> None:
    silent = _running(sessions, heartbeat_age_s=31)
    queue = FakeQueue()
    thread = reconciler.ReconcilerThread(sessions, queue, tuned, interval=0.1)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while _get(sessions, silent).status != "queued":
            assert time.monotonic() < deadline, "the reconciler thread did not act"
            time.sleep(0.05)
    finally:
        thread.stop()
    assert not thread.is_alive() and queue.sent == [(silent, "auto")]


def test_a_queued_run_whose_message_a_gone_worker_holds_is_sent_again(
    sessions: sessionmaker[Session], tuned: Settings, redis_url: str
) -> None:
    """The message sits in Redis's ``unacked`` hash (its worker was stopped while Redis was
    down, and Redis came back from its append-only file); the run went back to ``queued``."""
    broker = redis.Redis.from_url(redis_url)
    broker.flushdb()
    queue = CeleryRunQueue(redis_url)
    with sessions() as session:
        stranded = add_run(session)
        stranded.sent_at = utcnow() - timedelta(seconds=60)
        session.commit()
        run_id = stranded.id
    queue.enqueue(run_id, "auto", 60, 90)
    with queue._app.connection() as connection:
        held = connection.default_channel.basic_get("cpu", no_ack=False)
        assert held is not None
        # Taken just now: its worker may be about to claim the run.
        assert not _reconcile(sessions, queue, tuned)  # type: ignore[arg-type]
        [tag] = broker.zrange("unacked_index", 0, -1)
        broker.zadd("unacked_index", {tag: time.time() - tuned.resend_after_s - 1})
        report = _reconcile(sessions, queue, tuned)  # type: ignore[arg-type]
        assert report.resent == [run_id]
        assert broker.llen("cpu") == 1  # the new message waits for a live worker
        held.ack()
    broker.flushdb()
