"""The run task with the engine replaced by fakes that emit events, fail or get cancelled."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.models import Metric, Run, RunLog, RunStatus, RunTransition, TrainingLoss
from backend.services import runs
from backend.settings import Settings, get_settings
from tap_engine import events as ev
from tap_engine import runner
from tap_engine.config import RunConfig
from tests.backend.conftest import FakeQueue, add_run, dead_lease
from worker import tasks
from worker.celery_app import PREEMPT

Engine = Callable[..., Any]


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Callable[[Engine], list[dict[str, Any]]]:
    """Replace ``tap_engine.runner.run``; returns the list of calls it received."""
    calls: list[dict[str, Any]] = []

    def install(fake: Engine) -> list[dict[str, Any]]:
        def recording(
            config: RunConfig,
            observer: Any,
            workdir: Path,
            should_stop: Any,
            *,
            cache_dir: Path | None = None,
            state_memory_budget_mb: float | None = None,
        ) -> Any:
            calls.append(
                {
                    "config": config,
                    "workdir": workdir,
                    "cache_dir": cache_dir,
                    "state_memory_budget_mb": state_memory_budget_mb,
                }
            )
            return fake(config, observer, workdir, should_stop)

        monkeypatch.setattr(runner, "run", recording)
        return calls

    return install


def _get(sessions: sessionmaker[Session], run_id: int) -> Run:
    with sessions() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run


def _run_with_limit(sessions: sessionmaker[Session], seconds: float) -> int:
    with sessions() as session:
        run = add_run(session)
        run.time_limit_s = seconds
        session.commit()
        return run.id


def _transitions(sessions: sessionmaker[Session], run_id: int) -> list[RunTransition]:
    with sessions() as session:
        return runs.transitions(session, run_id)


def _succeeding(config: RunConfig, observer: Any, workdir: Path, should_stop: Any) -> Any:
    observer(ev.RoundStarted(round=1, participants=[0, 1], lr=0.01))
    observer(ev.LocalTraining(round=1, client=0, model="global", steps=5, losses={"t": 1.5}))
    observer(ev.Progress(stage="fl", round=1, total_rounds=1, fraction=0.9, elapsed_s=1, eta_s=2))
    for client in range(2):
        observer(
            ev.Evaluation(
                round=1,
                stage="fl",
                client=client,
                task="t",
                model="global",
                split="local",
                metric="accuracy",
                value=0.5,
                n=10,
            )
        )
    (workdir / "checkpoint").write_text("x")
    return runner.RunResult("succeeded", 1, 1.0)


def test_a_run_that_succeeds_has_its_events_and_outcome_in_sql(
    settings: Settings, sessions: sessionmaker[Session], engine: Any
) -> None:
    with sessions() as session:
        run_id = add_run(session, rounds=1).id
    calls = engine(_succeeding)
    assert tasks.execute(run_id) == "succeeded"

    [call] = calls
    assert call["config"] == RunConfig.model_validate(_get(sessions, run_id).config)
    assert settings.runs_dir is not None
    assert call["workdir"] == settings.runs_dir / str(run_id)
    assert (call["workdir"] / "checkpoint").exists()
    # the engine's cache and state budget come from the settings, as arguments
    assert call["cache_dir"] == settings.cache_dir and call["cache_dir"].is_dir()
    assert call["state_memory_budget_mb"] is None  # the default: no limit
    run = _get(sessions, run_id)
    assert run.status == "succeeded" and run.error is None
    assert run.progress == 1.0 and run.round == 1 and run.workdir == str(call["workdir"])
    assert run.started_at and run.finished_at and run.started_at <= run.finished_at
    with sessions() as session:
        assert session.query(Metric).filter_by(run_id=run_id).count() == 2
        assert session.scalars(select(TrainingLoss.loss)).all() == [1.5]


def test_the_servers_state_memory_budget_reaches_the_engine(
    settings: Settings,
    sessions: sessionmaker[Session],
    engine: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TAPFL_STATE_MEMORY_BUDGET_MB", "64")
    get_settings.cache_clear()  # the worker reads the settings again
    with sessions() as session:
        run_id = add_run(session, rounds=1).id
    calls = engine(_succeeding)
    assert tasks.execute(run_id) == "succeeded"
    assert [c["state_memory_budget_mb"] for c in calls] == [64.0]


def test_an_engine_error_fails_the_run_with_a_readable_reason_and_the_traceback_end(
    sessions: sessionmaker[Session], engine: Any
) -> None:
    def broken(*_: Any) -> Any:
        raise FileNotFoundError("dataset directory /nonexistent does not exist")

    with sessions() as session:
        run_id = add_run(session).id
    engine(broken)
    assert tasks.execute(run_id) == "failed"  # returns: the worker goes on to the next message
    run = _get(sessions, run_id)
    assert run.status == "failed" and run.finished_at is not None
    assert run.error is not None
    first_line = run.error.splitlines()[0]
    assert first_line == "FileNotFoundError: dataset directory /nonexistent does not exist"
    assert "Traceback" in run.error and "in broken" in run.error


def test_an_exception_without_message_still_names_its_type() -> None:
    try:
        raise NotImplementedError
    except NotImplementedError as exc:
        text = tasks.describe_failure(exc)
    assert text.startswith("NotImplementedError\n")
    assert len(tasks.describe_failure(ValueError("x" * 50_000))) <= tasks.MAX_ERROR_CHARS


def test_a_run_cancelled_while_running_ends_cancelled(
    sessions: sessionmaker[Session], engine: Any
) -> None:
    with sessions() as session:
        run_id = add_run(session).id

    def cancelled_midway(config: RunConfig, observer: Any, workdir: Path, should_stop: Any) -> Any:
        assert should_stop() is False
        with sessions() as session:  # what POST /runs/{id}/cancel will do
            session.get(Run, run_id).status = RunStatus.CANCELLING  # type: ignore[union-attr]
            session.commit()
        time.sleep(1.1)  # the check reads SQL at most once a second
        assert should_stop() is True
        return runner.RunResult("cancelled", 0, 0.1)

    engine(cancelled_midway)
    assert tasks.execute(run_id) == "cancelled"
    run = _get(sessions, run_id)
    assert run.status == "cancelled" and run.finished_at is not None


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_a_message_for_a_finished_run_does_not_run_it_again(
    sessions: sessionmaker[Session], engine: Any, status: str
) -> None:
    with sessions() as session:
        run = add_run(session)
        run.status = status
        session.commit()
        run_id = run.id
    calls = engine(_succeeding)
    assert tasks.execute(run_id) == "skipped"
    assert calls == [] and _get(sessions, run_id).status == status


def test_a_run_cancelled_before_it_started_is_marked_cancelled_without_running(
    sessions: sessionmaker[Session], engine: Any
) -> None:
    with sessions() as session:
        run = add_run(session)
        run.status = RunStatus.CANCELLING
        session.commit()
        run_id = run.id
    calls = engine(_succeeding)
    assert tasks.execute(run_id) == "skipped"
    assert calls == [] and _get(sessions, run_id).status == "cancelled"


def test_a_redelivered_running_run_resumes_keeping_its_start_time(
    sessions: sessionmaker[Session], engine: Any
) -> None:
    # The worker process died mid-run; the broker hands the message to the next worker.
    with sessions() as session:
        run_id = add_run(session).id

    def killed(*_: Any) -> Any:
        raise KeyboardInterrupt  # stands in for the worker process going away

    engine(killed)
    with pytest.raises(KeyboardInterrupt):  # not an Exception: the task does not record it
        tasks.execute(run_id)
    interrupted = _get(sessions, run_id)
    assert interrupted.status == "running" and interrupted.attempt == 1
    # While the process that claimed it lives, a second message is a duplicate: dropped.
    calls = engine(_succeeding)
    assert tasks.execute(run_id) == "skipped" and len(calls) == 1  # the killed attempt only
    with sessions() as session:
        session.get(Run, run_id).lease = dead_lease()  # type: ignore[union-attr]
        session.commit()
    assert tasks.execute(run_id) == "succeeded"
    run = _get(sessions, run_id)
    assert run.started_at == interrupted.started_at and run.attempt == 2
    assert [(t.from_status, t.to_status) for t in _transitions(sessions, run_id)] == [
        ("queued", "running"),
        ("running", "running"),
        ("running", "succeeded"),
    ]


def test_a_worker_that_lost_its_run_to_another_stops_and_records_nothing(
    sessions: sessionmaker[Session], engine: Any
) -> None:
    with sessions() as session:
        run_id = add_run(session).id

    def taken_over(config: RunConfig, observer: Any, workdir: Path, should_stop: Any) -> Any:
        with sessions() as session:  # the reconciler thought this worker dead; another took it
            run = session.get(Run, run_id)
            run.attempt, run.worker = 2, "someone else"  # type: ignore[union-attr]
            session.commit()
        time.sleep(1.1)
        assert should_stop() is True
        observer(
            ev.Progress(stage="fl", round=3, total_rounds=9, fraction=0.3, elapsed_s=1, eta_s=2)
        )
        return runner.RunResult("cancelled", 2, 1.0)

    engine(taken_over)
    assert tasks.execute(run_id) == "abandoned"
    run = _get(sessions, run_id)
    assert (run.status, run.worker, run.round) == ("running", "someone else", 0)


def test_a_run_its_worker_shuts_down_under_goes_back_to_the_queue(
    sessions: sessionmaker[Session], engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = FakeQueue()
    monkeypatch.setattr(tasks, "celery_run_queue", lambda _url: queue)
    with sessions() as session:
        run_id = add_run(session).id

    def preempted(config: RunConfig, observer: Any, workdir: Path, should_stop: Any) -> Any:
        assert should_stop() is False
        PREEMPT.set()  # what SIGUSR2 from the shutting-down worker does
        assert should_stop() is True  # at once, without waiting for the next SQL read
        return runner.RunResult("cancelled", 4, 1.0)

    engine(preempted)
    try:
        assert tasks.execute(run_id) == "preempted"
    finally:
        PREEMPT.clear()
    run = _get(sessions, run_id)
    assert run.status == "queued" and run.finished_at is None and run.worker is None
    assert queue.sent == [(run_id, "auto")] and run.sent_at is not None
    reason = _transitions(sessions, run_id)[-1].reason or ""
    assert "shutting down" in reason and "after round 4" in reason


def test_a_run_past_its_soft_time_limit_fails_saying_so(
    sessions: sessionmaker[Session], engine: Any
) -> None:
    def slow(*_: Any) -> Any:
        raise SoftTimeLimitExceeded()  # what Celery raises in the run's process

    run_id = _run_with_limit(sessions, 90)
    engine(slow)
    assert tasks.execute(run_id) == "failed"
    error = _get(sessions, run_id).error or ""
    assert error.startswith("time limit reached: the attempt ran for its 90 s limit")
    assert "Retry resumes from the last checkpoint" in error


def test_a_run_fails_at_its_own_time_limit_when_no_celery_signal_comes(
    sessions: sessionmaker[Session], engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Celery's soft-limit timer does not always fire (it lives in the pool's event loop);
    # the run's own check between steps is what ends it. Here the attempt "started" an hour
    # ago, and no SoftTimeLimitExceeded is ever raised.
    monkeypatch.setattr(tasks, "time", SimpleNamespace(monotonic=lambda: time.monotonic() - 3600))
    steps = 0

    def training(config: RunConfig, observer: Any, workdir: Path, should_stop: Any) -> Any:
        nonlocal steps
        while not should_stop() and steps < 1000:
            steps += 1
        return runner.RunResult("cancelled", 3, 1.0)

    run_id = _run_with_limit(sessions, 90)
    engine(training)
    assert tasks.execute(run_id) == "failed"
    assert steps == 0  # stopped at the first check past the limit
    run = _get(sessions, run_id)
    assert run.status == "failed"
    assert (run.error or "").startswith("time limit reached: the attempt ran for its 90 s limit")


def test_the_hard_time_limit_fails_the_run_of_that_message_only(
    sessions: sessionmaker[Session],
) -> None:
    from celery.exceptions import TimeLimitExceeded

    from worker.celery_app import _hard_time_limit

    with sessions() as session:
        run_id = add_run(session).id
        owner = runs.Owner.current("w")
        runs.claim_run(
            session, run_id, owner, task_id="msg-2", heartbeat_timeout_s=60, max_recoveries=3
        )
    task = tasks.run
    _hard_time_limit(sender=task, task_id="msg-1", exception=TimeLimitExceeded(90), args=[run_id])
    assert _get(sessions, run_id).status == "running"  # an older message's process
    _hard_time_limit(sender=task, task_id="msg-2", exception=ValueError("x"), args=[run_id])
    assert _get(sessions, run_id).status == "running"  # not a time limit
    _hard_time_limit(sender=task, task_id="msg-2", exception=TimeLimitExceeded(90), args=[run_id])
    run = _get(sessions, run_id)
    assert run.status == "failed" and "did not stop within 90 s" in (run.error or "")


def test_the_runs_log_holds_the_engines_and_the_workers_lines_in_order(
    sessions: sessionmaker[Session], engine: Any, settings: Settings
) -> None:
    def chatty(config: RunConfig, observer: Any, workdir: Path, should_stop: Any) -> Any:
        logging.getLogger("tap_engine.data").info("loaded %d images", 1797)
        logging.getLogger("tap_engine.data").debug("not kept: below the run log level")
        observer(ev.RoundStarted(round=1, participants=[0, 2], lr=0.003))
        observer(
            ev.LocalTraining(round=1, client=2, model="global", steps=5, losses={"digits": 1.25})
        )
        raise FileNotFoundError("no such dataset: /nonexistent")

    with sessions() as session:
        run_id = add_run(session).id
    engine(chatty)
    assert tasks.execute(run_id) == "failed"
    with sessions() as session:
        lines = session.scalars(
            select(RunLog).where(RunLog.run_id == run_id).order_by(RunLog.id)
        ).all()
    messages = [(line.source, line.level, line.message.splitlines()[0]) for line in lines]
    assert messages[0][2].startswith("queued -> running: taken by")
    assert messages[1][:2] == ("worker", "INFO") and "(attempt 1): " in messages[1][2]
    assert messages[2:5] == [
        ("engine", "INFO", "loaded 1797 images"),
        ("engine", "INFO", "round 1/?: clients 0, 2, lr 0.003"),
        ("engine", "INFO", "round 1 client 2 (global model): loss digits 1.2500 over 5 steps"),
    ]
    assert messages[5][:2] == ("worker", "ERROR") and "failed" in messages[5][2]
    assert "FileNotFoundError: no such dataset" in lines[5].message  # with the traceback
    assert messages[6] == (
        "worker",
        "ERROR",
        "running -> failed: FileNotFoundError: no such dataset: /nonexistent",
    )
    assert {line.attempt for line in lines[1:]} == {1}


def test_an_unknown_run_id_is_skipped(sessions: sessionmaker[Session], engine: Any) -> None:
    calls = engine(_succeeding)
    assert tasks.execute(999) == "skipped" and calls == []


def test_a_stored_config_the_engine_no_longer_accepts_fails_the_run(
    sessions: sessionmaker[Session], engine: Any
) -> None:
    with sessions() as session:
        run = add_run(session)
        run.config = {**run.config, "rounds": "many"}
        session.commit()
        run_id = run.id
    calls = engine(_succeeding)
    assert tasks.execute(run_id) == "failed" and calls == []
    assert "stored config" in (_get(sessions, run_id).error or "")


def _out_of_time(*_: Any, **__: Any) -> Any:
    raise SoftTimeLimitExceeded()


def test_a_time_limit_that_strikes_while_claiming_fails_the_run_of_that_message(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    with sessions() as session:
        run_id = add_run(session).id
        runs.mark_sent(session, run_id, "msg-1")
    monkeypatch.setattr(tasks.runs, "claim_run", _out_of_time)
    # Left queued, the reconciler would send it again, and it would run out again.
    assert tasks.execute(run_id, task_id="msg-1") == "failed"
    run = _get(sessions, run_id)
    assert run.status == "failed"
    assert (run.error or "").startswith("time limit reached before the run started")


def test_a_time_limit_that_strikes_in_the_setup_fails_the_run_saying_so(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = _run_with_limit(sessions, 30)
    monkeypatch.setattr(tasks.runs, "set_workdir", _out_of_time)  # before the engine runs
    assert tasks.execute(run_id) == "failed"
    run = _get(sessions, run_id)
    assert run.status == "failed"
    assert (run.error or "").startswith("time limit reached: the attempt ran for its 30 s limit")
