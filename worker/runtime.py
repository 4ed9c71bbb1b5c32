"""What surrounds one run in a worker process: its heartbeat and its log capture.

A thread marks the run alive in SQL every ``heartbeat_interval_s`` (whatever the engine is
doing: loading data, training or evaluating) and writes the captured log lines once a
second. When a heartbeat finds that the run no longer belongs to this attempt, ``lost``
is set and the run's ``StopCheck`` stops the engine.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from backend.services import runs
from backend.services.run_logs import add_logs

log = logging.getLogger(__name__)

MAX_BUFFERED_LINES = 50_000
# Loggers whose lines say what the engine does; all others are the worker's.
ENGINE_LOGGERS = ("tap_engine", "worker.progress")
# Where a task's own log lines go in Celery: a logger that does not propagate to the root.
CELERY_TASK_LOGGER = "celery.task"
# Where Celery sends what a run prints to stdout and stderr (see ``worker.celery_app``).
REDIRECTED_LOGGER = "celery.redirected"
# A progress bar's redraw, as tqdm (Hugging Face downloads, ``datasets.map``) or rich print
# it: "Map:  45%|████▌     | 45/100 [00:01<00:02, 30.0it/s]" or "━━━━━━╸━━━ 60%".
PROGRESS_BAR = re.compile(r"\d{1,3}%\|.*\||[━╸╺]{4,}|\|\s*\d+/\d+\s*\[\d+:\d+")


def is_progress_bar(record: logging.LogRecord, message: str) -> bool:
    """A progress bar redrawn on stderr and captured as a log line: noise, not a warning."""
    return record.name == REDIRECTED_LOGGER and PROGRESS_BAR.search(message) is not None


class RunLogHandler(logging.Handler):
    """Collects the log records of the process while a run runs, for ``run_logs``."""

    def __init__(self, run_id: int, attempt: int, level: str = "INFO") -> None:
        super().__init__(level)
        self.run_id, self.attempt = run_id, attempt
        self._lines: deque[dict[str, Any]] = deque()
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "_tapfl_run_log", False) or record.name.startswith("sqlalchemy"):
            return  # reached through a second logger, or our own SQL
        record._tapfl_run_log = True  # type: ignore[attr-defined]
        try:
            message = record.getMessage()
            level = record.levelname[:8]
            if is_progress_bar(record, message):
                if self.level > logging.DEBUG:
                    return  # the engine's own progress lines say the same, once a round
                level = "DEBUG"
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            line = {
                "run_id": self.run_id,
                "time": datetime.fromtimestamp(record.created, UTC),
                "level": level,
                "source": "engine" if record.name.startswith(ENGINE_LOGGERS) else "worker",
                "attempt": self.attempt,
                "message": message,
            }
        except Exception:
            self.handleError(record)
            return
        if len(self._lines) >= MAX_BUFFERED_LINES:
            self.dropped += 1  # the database is down for long: keep the newest lines
            self._lines.popleft()
        self._lines.append(line)

    def drain(self) -> list[dict[str, Any]]:
        lines = []
        while self._lines:
            lines.append(self._lines.popleft())
        return lines

    def requeue(self, lines: list[dict[str, Any]]) -> None:
        self._lines.extendleft(reversed(lines))


class RunRuntime:
    """Start with ``start()``; ``stop()`` ends the heartbeat and writes the last lines."""

    def __init__(
        self,
        run_id: int,
        attempt: int,
        sessions: sessionmaker[Session],
        heartbeat_interval_s: float,
        log_level: str = "INFO",
        flush_every_s: float = 1.0,
    ) -> None:
        self.run_id, self.attempt = run_id, attempt
        self.sessions = sessions
        self.heartbeat_interval_s = heartbeat_interval_s
        self.flush_every_s = min(flush_every_s, heartbeat_interval_s)
        self.lost = threading.Event()
        self.handler = RunLogHandler(run_id, attempt, log_level)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"run-{run_id}", daemon=True)
        self._loggers = [logging.getLogger(), logging.getLogger(CELERY_TASK_LOGGER)]
        self._root_level = logging.getLogger().level

    def start(self) -> RunRuntime:
        for logger in self._loggers:
            logger.addHandler(self.handler)
        root = logging.getLogger()
        if root.level == logging.NOTSET or root.level > self.handler.level:
            root.setLevel(self.handler.level)
        logging.captureWarnings(True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        for logger in self._loggers:
            logger.removeHandler(self.handler)
        logging.getLogger().setLevel(self._root_level)
        self.flush()

    def flush(self) -> None:
        """Write the captured lines; on a database error keep them for the next try."""
        lines = self.handler.drain()
        if self.handler.dropped:
            note = f"{self.handler.dropped} earlier log lines were dropped: the database was "
            note += "unreachable for long"
            lines.insert(0, self._line("WARNING", note))
            self.handler.dropped = 0
        if not lines:
            return
        try:
            with self.sessions() as session:
                add_logs(session, lines)
        except Exception as exc:
            self.handler.requeue(lines)
            log.warning(
                "run %s: could not write %d log lines yet: %s", self.run_id, len(lines), exc
            )

    def _line(self, level: str, message: str) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "time": datetime.now(UTC),
            "level": level,
            "source": "worker",
            "attempt": self.attempt,
            "message": message,
        }

    def _loop(self) -> None:
        last_beat = float("-inf")
        while True:
            now = time.monotonic()
            if now - last_beat >= self.heartbeat_interval_s:
                last_beat = now
                self._beat()
            self.flush()
            if self._stopping.wait(self.flush_every_s):
                return

    def _beat(self) -> None:
        try:
            with self.sessions() as session:
                if not runs.heartbeat(session, self.run_id, self.attempt):
                    self.lost.set()
        except Exception as exc:  # the database may come back before the timeout
            log.warning("run %s: heartbeat not written: %s", self.run_id, exc)
