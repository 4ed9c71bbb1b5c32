from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from backend.models import Run, RunStatus
from tests.backend.conftest import add_run
from worker.sql_observer import StopCheck


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _set_status(sessions: sessionmaker[Session], run_id: int, status: str) -> None:
    with sessions() as session:
        session.get(Run, run_id).status = status  # type: ignore[union-attr]
        session.commit()


def test_stop_check_sees_a_cancel_request_within_its_interval(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        run_id = add_run(session).id
    _set_status(sessions, run_id, RunStatus.RUNNING)
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


def test_stop_check_stops_a_run_whose_row_is_gone(sessions: sessionmaker[Session]) -> None:
    assert StopCheck(12345, sessions)() is True


def test_stop_check_keeps_the_heartbeat_fresh(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        run_id = add_run(session).id
    clock = Clock()
    should_stop = StopCheck(run_id, sessions, interval=1.0, heartbeat_every=10.0, clock=clock)

    def beat() -> object:
        with sessions() as session:
            return session.get(Run, run_id).heartbeat_at  # type: ignore[union-attr]

    should_stop()
    first = beat()
    assert first is not None
    clock.now += 2
    should_stop()
    assert beat() == first
    clock.now += 10
    should_stop()
    assert beat() > first  # type: ignore[operator]
