"""The engine's two callbacks for a run in the worker, both backed by SQL.

``SqlObserver`` writes each event as it comes (so the dashboard sees a run live) and logs a
line per round and per client's local training into the run's log; ``StopCheck`` tells the
engine whether to stop: the run is being cancelled, the worker is shutting down, or the run
no longer belongs to this attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from backend.models import Run, RunStatus
from backend.services import runs
from backend.services.events import record_event
from tap_engine import events as ev

# Lines about the engine's progress; the run log shows them with source "engine".
progress_log = logging.getLogger("worker.progress")


class SqlObserver:
    def __init__(
        self, run_id: int, sessions: sessionmaker[Session], attempt: int | None = None
    ) -> None:
        self.run_id = run_id
        self.attempt = attempt
        self._sessions = sessions
        self._total_rounds = 0
        self._first_round: int | None = None

    def __call__(self, event: ev.Event) -> None:
        with self._sessions() as session:
            record_event(session, self.run_id, event, self.attempt)
            if isinstance(event, ev.RoundStarted):
                self._on_round(session, event.round)
            session.commit()
        self._log(event)

    def _on_round(self, session: Session, round_no: int) -> None:
        if self._first_round is None:
            self._first_round = round_no
        elif round_no == self._first_round + 1 and self.attempt is not None:
            # A round completed in this attempt: earlier worker losses were not a crash loop.
            session.execute(
                update(Run)
                .where(Run.id == self.run_id, Run.attempt == self.attempt, Run.recoveries > 0)
                .values(recoveries=0)
            )

    def _log(self, event: ev.Event) -> None:
        match event:
            case ev.RunStarted():
                self._total_rounds = event.total_rounds
                resumed = event.resumed_from_round
                where = f"resuming after round {resumed}" if resumed else "from the start"
                progress_log.info(
                    "engine started %s: %s, seed %s, %s rounds, %s clients, %s trainable of %s "
                    "parameters",
                    where,
                    event.algorithm,
                    event.seed,
                    event.total_rounds,
                    len(event.clients),
                    f"{event.trainable_parameters:,}",
                    f"{event.trainable_parameters + event.frozen_parameters:,}",
                )
            case ev.RoundStarted():
                clients = ", ".join(map(str, event.participants))
                progress_log.info(
                    "round %s/%s: clients %s, lr %.3g",
                    event.round,
                    self._total_rounds or "?",
                    clients,
                    event.lr,
                )
            case ev.LocalTraining():
                losses = ", ".join(f"{task} {loss:.4f}" for task, loss in event.losses.items())
                progress_log.info(
                    "round %s client %s (%s model): loss %s over %s steps",
                    event.round,
                    event.client,
                    event.model,
                    losses or "-",
                    event.steps,
                )
            case ev.Replacement():
                progress_log.info(
                    "round %s client %s: the personal model takes over %s (loss %.4f vs %.4f "
                    "global, %s parameters)",
                    event.round,
                    event.client,
                    event.task,
                    event.personal_loss,
                    event.global_loss,
                    f"{event.parameters_copied:,}",
                )
            case ev.RunFinished():
                progress_log.info(
                    "engine %s after %s rounds in %.1f s",
                    event.status,
                    event.rounds_completed,
                    event.elapsed_s,
                )
            case _:
                pass


class StopCheck:
    """True once the run should stop; reads SQL at most every ``interval`` seconds.

    ``reason`` says why: ``cancel`` (someone cancelled the run), ``preempt`` (this worker
    is shutting down: ``preempt`` was set), ``lost`` (the run no longer belongs to
    ``attempt``: another worker took it over), ``gone`` (its row was deleted) or
    ``time_limit`` (the clock passed ``deadline``).
    """

    STOP = frozenset({RunStatus.CANCELLING, RunStatus.CANCELLED})

    def __init__(
        self,
        run_id: int,
        sessions: sessionmaker[Session],
        interval: float = 1.0,
        attempt: int | None = None,
        preempt: threading.Event | None = None,
        lost: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        deadline: float = float("inf"),
    ) -> None:
        self.run_id = run_id
        self.attempt = attempt
        self._sessions = sessions
        self._interval = interval
        self._preempt = preempt or threading.Event()
        self._lost = lost or threading.Event()
        self._clock = clock
        self._deadline = deadline
        self._last_read = float("-inf")
        self.reason: str | None = None

    def __call__(self) -> bool:
        if self.reason is not None:
            return True
        if self._preempt.is_set():
            self.reason = "preempt"
        elif self._lost.is_set():
            self.reason = "lost"
        else:
            now = self._clock()
            if now >= self._deadline:
                self.reason = "time_limit"
            elif now - self._last_read >= self._interval:
                self._last_read = now
                self.reason = self._read()
        return self.reason is not None

    def _read(self) -> str | None:
        with self._sessions() as session:
            state = runs.run_state(session, self.run_id)
        if state is None:
            return "gone"  # a run whose row is gone has no one left to report to
        status, attempt = state
        if self.attempt is not None and attempt != self.attempt:
            return "lost"
        if status in self.STOP:
            return "cancel"
        if status != RunStatus.RUNNING:
            return "lost"  # ended or re-queued by someone who thought this worker dead
        return None
