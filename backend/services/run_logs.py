"""A run's log lines: written by the worker while the run runs and by the lifecycle's
transitions, read over the API as a page after a cursor or as plain text."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from backend.models import RunLog, utcnow

MAX_MESSAGE_CHARS = 8000
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def clip(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 20] + f"... ({len(message)} chars)"


def add_log(
    session: Session,
    run_id: int,
    message: str,
    *,
    level: str = "INFO",
    source: str,
    attempt: int | None = None,
    time: datetime | None = None,
) -> None:
    """Add one line; the caller commits (with the change the line is about)."""
    session.add(
        RunLog(
            run_id=run_id,
            time=time or utcnow(),
            level=level,
            source=source,
            attempt=attempt,
            message=clip(message),
        )
    )


def add_logs(session: Session, rows: Iterable[dict[str, Any]]) -> int:
    """Insert many lines at once (the worker's buffered logging); commits."""
    batch = [{**row, "message": clip(row["message"])} for row in rows]
    if batch:
        session.execute(insert(RunLog), batch)
        session.commit()
    return len(batch)


def _at_least(level: str) -> list[str]:
    return list(LEVELS[LEVELS.index(level) :])


def query_logs(
    session: Session, run_id: int, after: int, limit: int | None, level: str | None = None
) -> tuple[list[RunLog], int]:
    """Lines with ``seq > after`` in order, and how many there are in all."""
    query = select(RunLog).where(RunLog.run_id == run_id, RunLog.id > after)
    if level is not None:
        query = query.where(RunLog.level.in_(_at_least(level)))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(RunLog.id).limit(limit)).all()
    return list(rows), total


def logs_text(rows: Sequence[RunLog]) -> str:
    return "".join(
        f"{row.time.isoformat(timespec='milliseconds')} {row.level:<7} [{row.source}] "
        f"{row.message}\n"
        for row in rows
    )
