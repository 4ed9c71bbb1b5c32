"""The run task with the engine replaced by fakes that emit events, fail or get cancelled."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.models import Metric, Run, RunStatus, TrainingLoss
from backend.settings import Settings
from tap_engine import events as ev
from tap_engine import runner
from tap_engine.config import RunConfig
from tests.backend.conftest import add_run
from worker import tasks

Engine = Callable[..., Any]


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> Callable[[Engine], list[dict[str, Any]]]:
    """Replace ``tap_engine.runner.run``; returns the list of calls it received."""
    calls: list[dict[str, Any]] = []

    def install(fake: Engine) -> list[dict[str, Any]]:
        def recording(config: RunConfig, observer: Any, workdir: Path, should_stop: Any) -> Any:
            calls.append({"config": config, "workdir": workdir})
            return fake(config, observer, workdir, should_stop)

        monkeypatch.setattr(runner, "run", recording)
        return calls

    return install


def _get(sessions: sessionmaker[Session], run_id: int) -> Run:
    with sessions() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run


def _succeeding(config: RunConfig, observer: Any, workdir: Path, should_stop: Any) -> Any:
    observer(ev.RoundStarted(round=1, participants=[0, 1], lr=0.01))
    observer(ev.LocalTraining(round=1, client=0, model="global", steps=5, losses={"t": 1.5}))
    observer(ev.Progress(stage="fl", round=1, total_rounds=1, fraction=0.9, elapsed_s=1, eta_s=2))
    for client in range(2):
        observer(
            ev.Evaluation(
                round=1, stage="fl", client=client, task="t", model="global", split="local",
                metric="accuracy", value=0.5, n=10,
            )
        )  # fmt: skip
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
    run = _get(sessions, run_id)
    assert run.status == "succeeded" and run.error is None
    assert run.progress == 1.0 and run.round == 1 and run.workdir == str(call["workdir"])
    assert run.started_at and run.finished_at and run.started_at <= run.finished_at
    with sessions() as session:
        assert session.query(Metric).filter_by(run_id=run_id).count() == 2
        assert session.scalars(select(TrainingLoss.loss)).all() == [1.5]


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
    # The worker died mid-run; the broker hands the message to the next worker.
    with sessions() as session:
        run_id = add_run(session).id

    def killed(*_: Any) -> Any:
        raise KeyboardInterrupt  # stands in for the worker process going away

    engine(killed)
    with pytest.raises(KeyboardInterrupt):  # not an Exception: the task does not record it
        tasks.execute(run_id)
    interrupted = _get(sessions, run_id)
    assert interrupted.status == "running"
    engine(_succeeding)
    assert tasks.execute(run_id) == "succeeded"
    assert _get(sessions, run_id).started_at == interrupted.started_at


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
