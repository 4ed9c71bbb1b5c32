"""The run lifecycle's transitions on a real SQLite database: claims, take-overs of runs whose
worker is gone, cancel, retry, and the fencing of a worker that lost its run."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.models import Run, RunLog, RunStatus, RunTransition, utcnow
from backend.services import runs
from backend.services.leases import Lease
from tests.backend.conftest import add_run, dead_lease

ME = runs.Owner.current("test-worker")
TIMEOUT = 60.0


def _claim(session: Session, run_id: int, owner: runs.Owner = ME, max_recoveries: int = 3):
    return runs.claim_run(
        session,
        run_id,
        owner,
        task_id="t-1",
        heartbeat_timeout_s=TIMEOUT,
        max_recoveries=max_recoveries,
    )


def _set(sessions: sessionmaker[Session], run_id: int, **values: object) -> None:
    with sessions() as session:
        run = session.get(Run, run_id)
        assert run is not None
        for key, value in values.items():
            setattr(run, key, value)
        session.commit()


def _history(sessions: sessionmaker[Session], run_id: int) -> list[tuple[str | None, str]]:
    with sessions() as session:
        rows = session.scalars(
            select(RunTransition).where(RunTransition.run_id == run_id).order_by(RunTransition.id)
        ).all()
        return [(t.from_status, t.to_status) for t in rows]


@pytest.fixture
def run_id(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return add_run(session).id


def test_a_queued_run_is_claimed_once_with_a_timestamped_transition(
    sessions: sessionmaker[Session], run_id: int
) -> None:
    with sessions() as session:
        run = _claim(session, run_id)
        assert run is not None
        assert (run.status, run.attempt, run.stage) == ("running", 1, "setup")
        assert run.worker == ME.name and run.lease == ME.lease and run.task_id == "t-1"
        assert run.started_at == run.claimed_at == run.heartbeat_at is not None
        # A second message for the same run (a duplicate) finds it running with a live owner.
        other = runs.Owner("other-worker pid 1", Lease("x", "y", "z", 1, "1").encode())
        assert _claim(session, run_id, other) is None
        assert runs.fresh(session, run_id).attempt == 1  # type: ignore[union-attr]
    assert _history(sessions, run_id) == [("queued", "running")]
    with sessions() as session:
        [transition] = runs.transitions(session, run_id)
        assert "taken by test-worker" in (transition.reason or "")
        assert transition.at is not None and transition.attempt == 1
        lines = session.scalars(select(RunLog.message).where(RunLog.run_id == run_id)).all()
        assert lines == [f"queued -> running: {transition.reason}"]


def test_of_many_workers_claiming_a_run_at_once_exactly_one_gets_it(
    sessions: sessionmaker[Session], run_id: int
) -> None:
    start = threading.Barrier(6)

    def claim(i: int) -> bool:
        owner = runs.Owner(f"w{i}", Lease(f"host{i}", "boot", "ns", 100 + i, "1").encode())
        start.wait()
        with sessions() as session:
            return _claim(session, run_id, owner) is not None

    with ThreadPoolExecutor(6) as pool:
        won = list(pool.map(claim, range(6)))
    assert won.count(True) == 1
    assert _history(sessions, run_id) == [("queued", "running")]


def test_a_run_whose_worker_process_died_here_is_taken_over_at_once(
    sessions: sessionmaker[Session], run_id: int
) -> None:
    with sessions() as session:
        first = _claim(session, run_id)
        assert first is not None
    _set(sessions, run_id, lease=dead_lease())  # the process that claimed it was SIGKILLed
    with sessions() as session:
        again = _claim(session, run_id)
        assert again is not None
        assert (again.status, again.attempt, again.recoveries) == ("running", 2, 1)
        assert again.started_at == first.started_at  # the run started once, attempts twice
        [_, takeover] = runs.transitions(session, run_id)
        assert (takeover.from_status, takeover.to_status) == ("running", "running")
        assert "is gone" in (takeover.reason or "") and "last checkpoint" in (takeover.reason or "")


def test_a_dead_process_is_named_as_the_cause_even_when_its_heartbeat_is_stale(
    sessions: sessionmaker[Session], run_id: int
) -> None:
    """The process's death is certain; a stale heartbeat is its symptom, and can also come
    from a busy machine, so the takeover says the process is gone."""
    with sessions() as session:
        assert _claim(session, run_id) is not None
    stale = utcnow() - timedelta(seconds=TIMEOUT + 1)
    _set(sessions, run_id, lease=dead_lease(), heartbeat_at=stale)
    with sessions() as session:
        assert _claim(session, run_id) is not None
        reason = runs.transitions(session, run_id)[-1].reason or ""
        assert "is gone" in reason and "no heartbeat" not in reason


def test_a_run_of_another_machine_is_taken_over_only_once_its_heartbeat_is_stale(
    sessions: sessionmaker[Session], run_id: int
) -> None:
    elsewhere = Lease("gpu-box", "another-boot", "pid:[1]", 4242, "123").encode()
    with sessions() as session:
        assert _claim(session, run_id) is not None
    _set(sessions, run_id, lease=elsewhere, heartbeat_at=utcnow() - timedelta(seconds=30))
    with sessions() as session:
        assert _claim(session, run_id) is None  # 30 s is within the 60 s timeout
    _set(sessions, run_id, heartbeat_at=utcnow() - timedelta(seconds=TIMEOUT + 1))
    with sessions() as session:
        run = _claim(session, run_id)
        assert run is not None and run.attempt == 2
        assert "no heartbeat" in (runs.transitions(session, run_id)[-1].reason or "")


def test_a_run_that_keeps_killing_its_worker_fails_after_max_recoveries(
    sessions: sessionmaker[Session], run_id: int
) -> None:
    with sessions() as session:
        assert _claim(session, run_id) is not None
    for expected_attempt in (2, 3):
        _set(sessions, run_id, lease=dead_lease())
        with sessions() as session:
            run = _claim(session, run_id, max_recoveries=2)
            assert run is not None and run.attempt == expected_attempt
    _set(sessions, run_id, lease=dead_lease())
    with sessions() as session:
        assert _claim(session, run_id, max_recoveries=2) is None
        run = runs.fresh(session, run_id)
        assert run is not None and run.status == "failed" and run.finished_at is not None
        assert "gave up after losing its worker 3 times" in (run.error or "")


def test_a_cancelling_run_whose_worker_died_ends_cancelled(
    sessions: sessionmaker[Session], run_id: int
) -> None:
    with sessions() as session:
        assert _claim(session, run_id) is not None
        runs.cancel_run(session, run_id, "alice", TIMEOUT)
    _set(sessions, run_id, lease=dead_lease())
    with sessions() as session:
        assert _claim(session, run_id) is None
        assert runs.fresh(session, run_id).status == "cancelled"  # type: ignore[union-attr]
    assert _history(sessions, run_id)[-2:] == [
        ("running", "cancelling"),
        ("cancelling", "cancelled"),
    ]


def test_cancel_stops_a_queued_run_at_once_and_asks_a_running_one(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        queued, running = add_run(session).id, add_run(session).id
        assert _claim(session, running) is not None
        run = runs.cancel_run(session, queued, "alice", TIMEOUT)
        assert run is not None and run.status == "cancelled" and run.finished_at is not None
        run = runs.cancel_run(session, running, "alice", TIMEOUT)
        assert run is not None and run.status == "cancelling" and run.finished_at is None
        # Twice is the same as once.
        assert runs.cancel_run(session, running, "bob", TIMEOUT).status == "cancelling"  # type: ignore[union-attr]
        assert runs.cancel_run(session, queued, "bob", TIMEOUT).status == "cancelled"  # type: ignore[union-attr]
        # A message for the cancelled run that arrives later does not start it.
        assert _claim(session, queued) is None
    assert _history(sessions, running) == [("queued", "running"), ("running", "cancelling")]
    assert _history(sessions, queued) == [("queued", "cancelled")]


def test_cancelling_a_running_run_whose_worker_is_gone_ends_it_at_once(
    sessions: sessionmaker[Session], run_id: int
) -> None:
    with sessions() as session:
        assert _claim(session, run_id) is not None
    _set(sessions, run_id, lease=dead_lease())
    with sessions() as session:
        run = runs.cancel_run(session, run_id, "alice", TIMEOUT)
        assert run is not None and run.status == "cancelled"


@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_a_finished_run_cannot_be_cancelled(
    sessions: sessionmaker[Session], run_id: int, status: str
) -> None:
    _set(sessions, run_id, status=status)
    with sessions() as session, pytest.raises(runs.LifecycleError, match=f"already {status}"):
        runs.cancel_run(session, run_id, "alice", TIMEOUT)


def test_retry_queues_a_failed_or_cancelled_run_again_and_nothing_else(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        ids = {status: add_run(session).id for status in RunStatus}
    for status, run_id in ids.items():
        _set(sessions, run_id, status=status, error="boom", recoveries=2, finished_at=utcnow())
    with sessions() as session:
        for status in ("failed", "cancelled"):
            run = runs.retry_run(session, ids[status], "alice")
            assert run is not None and run.status == "queued"
            assert run.error is None and run.finished_at is None and run.recoveries == 0
            assert run.sent_at is None and run.queued_at is not None
        for status in ("succeeded", "queued", "running", "cancelling"):
            with pytest.raises(runs.LifecycleError) as refused:
                runs.retry_run(session, ids[status], "alice")
            assert f"run {ids[status]}" in str(refused.value)


def test_a_worker_that_lost_its_run_cannot_record_an_ending_or_a_heartbeat(
    sessions: sessionmaker[Session], run_id: int
) -> None:
    with sessions() as session:
        assert _claim(session, run_id) is not None  # attempt 1
    _set(sessions, run_id, lease=dead_lease())
    with sessions() as session:
        assert _claim(session, run_id) is not None  # attempt 2 took over
        # Attempt 1 was only presumed dead and comes back: it must not touch the run.
        assert runs.heartbeat(session, run_id, attempt=1) is False
        assert runs.finish_run(session, run_id, 1, RunStatus.SUCCEEDED, 5) is False
        assert runs.fail_run(session, run_id, 1, "late failure") is False
        assert runs.requeue_run(session, run_id, 1, "late shutdown") is False
        run = runs.fresh(session, run_id)
        assert run is not None and (run.status, run.attempt, run.error) == ("running", 2, None)
        assert runs.heartbeat(session, run_id, attempt=2) is True
        assert runs.finish_run(session, run_id, 2, RunStatus.SUCCEEDED, 5) is True
        assert runs.fresh(session, run_id).status == "succeeded"  # type: ignore[union-attr]


def test_a_run_that_finishes_while_being_cancelled_succeeds(
    sessions: sessionmaker[Session], run_id: int
) -> None:
    with sessions() as session:
        assert _claim(session, run_id) is not None
        runs.cancel_run(session, run_id, "alice", TIMEOUT)
        assert runs.finish_run(session, run_id, 1, RunStatus.SUCCEEDED, 20) is True
        run = runs.fresh(session, run_id)
        assert run is not None and run.status == "succeeded" and run.progress == 1.0
        assert "too late" in (runs.transitions(session, run_id)[-1].reason or "")


def test_a_preempted_run_goes_back_to_the_queue(
    sessions: sessionmaker[Session], run_id: int
) -> None:
    with sessions() as session:
        assert _claim(session, run_id) is not None
        assert runs.requeue_run(session, run_id, 1, "worker shutting down") is True
        run = runs.fresh(session, run_id)
        assert run is not None and run.status == "queued" and run.worker is None
        again = _claim(session, run_id)
        assert again is not None and again.attempt == 2 and again.recoveries == 0


def test_the_lease_of_this_process_is_alive_and_that_of_an_exited_one_is_not() -> None:
    assert Lease.current().alive() is True
    assert Lease.decode(dead_lease()).alive() is False  # type: ignore[union-attr]
    assert Lease("elsewhere", "b", "n", 1, "1").alive() is None  # cannot tell: heartbeat only
    assert Lease.decode("garbage") is None and Lease.decode(None) is None
