"""The engine's two callbacks for a run in the worker, both backed by SQL.

``SqlObserver`` writes each event as it comes (so the dashboard sees a run live) and
``StopCheck`` tells the engine whether someone asked the run to stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from backend.models import RunStatus
from backend.services import runs
from backend.services.events import record_event
from tap_engine.events import Event


class SqlObserver:
    def __init__(self, run_id: int, sessions: sessionmaker[Session]) -> None:
        self.run_id = run_id
        self._sessions = sessions

    def __call__(self, event: Event) -> None:
        with self._sessions() as session:
            record_event(session, self.run_id, event)
            session.commit()


class StopCheck:
    """True once the run is being cancelled; reads SQL at most every ``interval`` seconds.

    The engine may call it every step, so it also keeps ``heartbeat_at`` fresh during
    long rounds without events.
    """

    STOP = frozenset({RunStatus.CANCELLING, RunStatus.CANCELLED})

    def __init__(
        self,
        run_id: int,
        sessions: sessionmaker[Session],
        interval: float = 1.0,
        heartbeat_every: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.run_id = run_id
        self._sessions = sessions
        self._interval = interval
        self._heartbeat_every = heartbeat_every
        self._clock = clock
        self._last_read = self._last_beat = float("-inf")
        self._stop = False

    def __call__(self) -> bool:
        now = self._clock()
        if self._stop or now - self._last_read < self._interval:
            return self._stop
        self._last_read = now
        with self._sessions() as session:
            status = runs.run_status(session, self.run_id)
            if now - self._last_beat >= self._heartbeat_every:
                runs.heartbeat(session, self.run_id)
                self._last_beat = now
        # A run whose row is gone has no one left to report to.
        self._stop = status is None or status in self.STOP
        return self._stop
