"""The worker's main process drops messages that would start nothing (worker/stale.py)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from backend.models import RunStatus, utcnow
from backend.services.leases import Lease
from tests.backend.conftest import add_run, dead_lease
from worker import stale


class Message:
    """What kombu hands the strategy: ``decode()`` gives ``[args, kwargs, embed]``."""

    def __init__(self, body: Any) -> None:
        self.body = body

    def decode(self) -> Any:
        return json.loads(self.body)


def _run(sessions: sessionmaker[Session], **values: Any) -> int:
    with sessions() as session:
        run = add_run(session)
        for name, value in values.items():
            setattr(run, name, value)
        session.commit()
        return run.id


def test_messages_for_ended_missing_or_live_runs_are_stale(
    sessions: sessionmaker[Session],
) -> None:
    now = utcnow()
    live = Lease.current().encode()
    cancelled = _run(sessions, status=RunStatus.CANCELLED)
    succeeded = _run(sessions, status=RunStatus.SUCCEEDED)
    running = _run(sessions, status=RunStatus.RUNNING, worker="w1", heartbeat_at=now, lease=live)
    assert stale.stale_reason(cancelled) == "it is cancelled"
    assert stale.stale_reason(succeeded) == "it is succeeded"
    assert stale.stale_reason(10_000) == "no such run"
    assert stale.stale_reason(running) == "w1 runs it (a duplicate message)"


def test_messages_the_claim_must_decide_go_to_the_pool(sessions: sessionmaker[Session]) -> None:
    queued = _run(sessions)
    # Its worker's process is gone: the claim takes it over (or ends a cancel).
    orphan = _run(
        sessions, status=RunStatus.RUNNING, worker="w1", heartbeat_at=utcnow(), lease=dead_lease()
    )
    never_started = _run(sessions, status=RunStatus.CANCELLING)
    assert stale.stale_reason(queued) is None
    assert stale.stale_reason(orphan) is None
    assert stale.stale_reason(never_started) is None


def test_the_run_id_is_read_from_the_message_body_and_junk_reads_as_none() -> None:
    assert stale.run_id_of(Message(json.dumps([[42], {}, {}]))) == 42
    assert stale.run_id_of(Message(json.dumps([[], {}, {}]))) is None
    assert stale.run_id_of(Message("not json")) is None


def test_a_database_that_does_not_answer_hands_the_message_to_the_pool(
    sessions: sessionmaker[Session], monkeypatch: Any
) -> None:
    def down() -> Any:
        raise ConnectionError("database down")

    monkeypatch.setattr(stale, "session_factory", down)
    assert stale.stale_reason(_run(sessions, status=RunStatus.CANCELLED)) is None
