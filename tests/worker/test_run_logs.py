"""What a run prints to stdout and stderr reaches its log at a fitting level: Celery's
redirect of a worker process's streams, then the run's log handler."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from celery.utils.log import LoggingProxy
from tqdm import tqdm

from worker.celery_app import app
from worker.runtime import REDIRECTED_LOGGER, RunLogHandler


@pytest.fixture
def redirected() -> Iterator[logging.Logger]:
    """The logger Celery writes a task process's stdout and stderr to."""
    logger = logging.getLogger(REDIRECTED_LOGGER)
    before = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield logger
    finally:
        logger.setLevel(before)


def printed(logger: logging.Logger, level: str) -> list[dict[str, str]]:
    """A run's log lines after it printed a tqdm bar and a line of text, as a worker
    captures them with its log level at ``level``."""
    handler = RunLogHandler(run_id=1, attempt=1, level=level)
    logger.addHandler(handler)
    try:
        stream = LoggingProxy(logger, loglevel=app.conf.worker_redirect_stdouts_level)
        for _ in tqdm(range(3), file=stream, desc="Map", mininterval=0, ascii=False):
            pass
        print("loaded 3 shards", file=stream)
    finally:
        logger.removeHandler(handler)
    return [{"level": line["level"], "message": line["message"]} for line in handler.drain()]


def test_a_progress_bar_is_a_debug_line_and_printed_text_is_info(
    redirected: logging.Logger,
) -> None:
    lines = printed(redirected, "DEBUG")
    bars = [line for line in lines if "Map:" in line["message"]]
    assert bars and {line["level"] for line in bars} == {"DEBUG"}
    assert {"level": "INFO", "message": "loaded 3 shards"} in lines
    assert not [line for line in lines if line["level"] == "WARNING"]


def test_at_the_usual_info_level_progress_bars_are_left_out(redirected: logging.Logger) -> None:
    assert printed(redirected, "INFO") == [{"level": "INFO", "message": "loaded 3 shards"}]
