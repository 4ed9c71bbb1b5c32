"""Placeholder: replaced by the real training loop shortly."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tap_engine.config import RunConfig
from tap_engine.events import Observer


class RunResult:  # filled in by the real implementation
    status: str


def run(
    config: RunConfig,
    observer: Observer,
    workdir: Path,
    should_stop: Callable[[], bool] = lambda: False,
) -> RunResult:
    raise NotImplementedError
