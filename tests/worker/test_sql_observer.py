from __future__ import annotations

import logging
import threading
import time
from datetime import datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.models import RoundTraffic, Run, RunLog, RunStatus, TrainingStepLoss
from backend.services import runs
from tap_engine import events as ev
from tests.backend.conftest import add_run
from worker.runtime import RunRuntime
from worker.sql_observer import SqlObserver, StopCheck


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _set_status(sessions: sessionmaker[Session], run_id: int, status: str) -> None:
    with sessions() as session:
        session.get(Run, run_id).status = status  # type: ignore[union-attr]
        session.commit()


def _running_run(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        run_id = add_run(session).id
    _set_status(sessions, run_id, RunStatus.RUNNING)
    return run_id


def test_stop_check_sees_a_cancel_request_within_its_interval(
    sessions: sessionmaker[Session],
) -> None:
    run_id = _running_run(sessions)
    clock = Clock()
    should_stop = StopCheck(run_id, sessions, interval=1.0, clock=clock)
    assert should_stop() is False
    _set_status(sessions, run_id, RunStatus.CANCELLING)
    clock.now += 0.5
    assert should_stop() is False  # not read again yet: the engine may call this every step
    clock.now += 0.6
    assert should_stop() is True
    _set_status(sessions, run_id, RunStatus.RUNNING)
    clock.now += 5
    assert should_stop() is True  # once stopping, always stopping


def test_stop_check_stops_at_the_deadline_without_reading_sql(
    sessions: sessionmaker[Session],
) -> None:
    run_id = _running_run(sessions)
    clock = Clock()
    should_stop = StopCheck(run_id, sessions, interval=60, clock=clock, deadline=110.0)
    assert should_stop() is False
    clock.now = 109.9
    assert should_stop() is False
    clock.now = 110.0  # well within the SQL interval: the deadline is checked on every call
    assert should_stop() is True and should_stop.reason == "time_limit"


def test_stop_check_stops_a_run_whose_row_is_gone(sessions: sessionmaker[Session]) -> None:
    assert StopCheck(12345, sessions)() is True


def test_stop_check_stops_a_run_that_belongs_to_another_attempt_now(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        run = add_run(session)
        run.status, run.attempt = RunStatus.RUNNING, 1
        session.commit()
        run_id = run.id
    clock = Clock()
    should_stop = StopCheck(run_id, sessions, interval=1.0, attempt=1, clock=clock)
    assert should_stop() is False
    with sessions() as session:
        session.get(Run, run_id).attempt = 2  # type: ignore[union-attr]
        session.commit()
    clock.now += 1
    assert should_stop() is True and should_stop.reason == "lost"


def test_stop_check_stops_at_once_when_told_to_preempt_or_that_the_run_is_lost(
    sessions: sessionmaker[Session],
) -> None:
    run_id = _running_run(sessions)
    for reason in ("preempt", "lost"):
        flags = {"preempt": threading.Event(), "lost": threading.Event()}
        should_stop = StopCheck(run_id, sessions, interval=60, **flags)
        assert should_stop() is False
        flags[reason].set()
        assert should_stop() is True and should_stop.reason == reason


def _beat(sessions: sessionmaker[Session], run_id: int) -> datetime | None:
    with sessions() as session:
        return session.get(Run, run_id).heartbeat_at  # type: ignore[union-attr]


def _claimed(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        run_id = add_run(session).id
        owner = runs.Owner.current("w")
        runs.claim_run(
            session, run_id, owner, task_id="t", heartbeat_timeout_s=60, max_recoveries=3
        )
        return run_id


def test_the_runtime_keeps_the_heartbeat_fresh_whatever_the_engine_does(
    sessions: sessionmaker[Session],
) -> None:
    run_id = _claimed(sessions)
    first = _beat(sessions, run_id)
    runtime = RunRuntime(run_id, 1, sessions, heartbeat_interval_s=0.1).start()
    try:
        time.sleep(0.5)  # the engine is busy (loading data, evaluating): no calls at all
        assert _beat(sessions, run_id) > first  # type: ignore[operator]
        assert not runtime.lost.is_set()
        with sessions() as session:  # another worker took the run over
            session.get(Run, run_id).attempt = 2  # type: ignore[union-attr]
            session.commit()
        deadline = time.monotonic() + 5
        while not runtime.lost.is_set():
            assert time.monotonic() < deadline, "the runtime did not notice"
            time.sleep(0.05)
    finally:
        runtime.stop()


def test_the_runtime_captures_log_lines_and_lets_go_of_logging_when_it_stops(
    sessions: sessionmaker[Session],
) -> None:
    run_id = _claimed(sessions)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    runtime = RunRuntime(run_id, 1, sessions, heartbeat_interval_s=10).start()
    logging.getLogger("tap_engine.model").info("built %s", "the model")
    logging.getLogger("worker.tasks").warning("careful")
    try:
        raise ValueError("bad value")
    except ValueError:
        logging.getLogger("tap_engine.data").exception("loading failed")
    runtime.stop()
    logging.getLogger("tap_engine.model").info("after the run: not captured")
    assert root.handlers == handlers and root.level == level

    with sessions() as session:
        lines = session.scalars(
            select(RunLog).where(RunLog.run_id == run_id, RunLog.attempt == 1).order_by(RunLog.id)
        ).all()
    got = [(line.source, line.level, line.message.splitlines()[0]) for line in lines[1:]]
    assert got == [
        ("engine", "INFO", "built the model"),
        ("worker", "WARNING", "careful"),
        ("engine", "ERROR", "loading failed"),
    ]
    assert "ValueError: bad value" in lines[-1].message


def test_the_runtime_keeps_lines_it_could_not_write_and_writes_them_later(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = _claimed(sessions)
    runtime = RunRuntime(run_id, 1, sessions, heartbeat_interval_s=10)
    runtime.handler.setLevel(logging.INFO)
    record = logging.LogRecord("tap_engine.x", logging.INFO, __file__, 1, "kept", None, None)
    runtime.handler.handle(record)

    def down(*_: object) -> None:
        raise OSError("database unreachable")

    monkeypatch.setattr("worker.runtime.add_logs", down)
    runtime.flush()
    monkeypatch.undo()
    runtime.flush()
    with sessions() as session:
        assert session.scalars(select(RunLog.message).where(RunLog.message == "kept")).all() == [
            "kept"
        ]


def test_the_observer_logs_rounds_and_resets_worker_losses_once_a_round_completes(
    sessions: sessionmaker[Session],
) -> None:
    run_id = _claimed(sessions)
    with sessions() as session:
        session.get(Run, run_id).recoveries = 2  # type: ignore[union-attr]
        session.commit()
    observer = SqlObserver(run_id, sessions, attempt=1)
    observer(ev.RoundStarted(round=4, participants=[1], lr=0.01))  # resumed after round 3
    with sessions() as session:
        assert session.get(Run, run_id).recoveries == 2  # type: ignore[union-attr]
    observer(ev.RoundStarted(round=5, participants=[2], lr=0.01))  # round 4 completed
    with sessions() as session:
        run = session.get(Run, run_id)
        assert run is not None and run.recoveries == 0 and run.round == 5


def test_the_observer_stores_stage_two_steps_without_a_log_line_for_each(
    sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    run_id = _claimed(sessions)
    observer = SqlObserver(run_id, sessions, attempt=1)
    where = {"round": 3, "stage": "post", "client": 0, "model": "final", "micro_batches": 4}
    with caplog.at_level(logging.INFO, logger="worker.progress"):
        for step in (1, 2):
            values = {"losses": {"t": 1.0}, "extra_losses": {"kd": {"t": 0.002}}}
            observer(ev.TrainingStep(**where, step=step, **values))
    with sessions() as session:
        rows = session.scalars(select(TrainingStepLoss).where(TrainingStepLoss.run_id == run_id))
        keys = sorted((r.step, r.term) for r in rows)
    assert keys == [(step, term) for step in (1, 2) for term in ("kd", "task")]
    # Dozens of steps per client: the run log keeps to rounds and local trainings.
    assert not [r for r in caplog.records if r.name == "worker.progress"]


def test_the_observer_stores_traffic_once_when_a_resumed_attempt_repeats_a_round(
    sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    run_id = _claimed(sessions)

    def round_of(observer: SqlObserver, round_no: int) -> None:
        for direction in ("down", "up"):
            observer(
                ev.RoundTraffic(
                    round=round_no, client=0, direction=direction, bytes=1000, parameters=250
                )
            )

    with caplog.at_level(logging.INFO, logger="worker.progress"):
        first = SqlObserver(run_id, sessions, attempt=1)
        round_of(first, 1)
        round_of(first, 2)  # the worker dies here, before round 2's checkpoint
        resumed = SqlObserver(run_id, sessions, attempt=2)
        round_of(resumed, 2)  # the new attempt plays round 2 again from round 1's checkpoint
    with sessions() as session:
        rows = session.scalars(select(RoundTraffic).where(RoundTraffic.run_id == run_id)).all()
    assert sorted((r.round, r.direction) for r in rows) == [
        (1, "down"),
        (1, "up"),
        (2, "down"),
        (2, "up"),
    ]
    assert sum(r.bytes for r in rows) == 4000
    assert not [r for r in caplog.records if r.name == "worker.progress"]
