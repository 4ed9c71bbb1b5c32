"""An observer for ``tapfl run``: JSON lines to a file and a rich progress bar."""

from __future__ import annotations

from types import TracebackType
from typing import TextIO

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from tap_engine.events import Event


class ConsoleObserver:
    def __init__(self, sink: TextIO, quiet: bool = False) -> None:
        self.sink = sink
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            disable=quiet,
            transient=False,
        )
        self.task = self.bar.add_task("starting", total=1.0)

    def __enter__(self) -> ConsoleObserver:
        self.bar.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.bar.stop()

    def __call__(self, event: Event) -> None:
        self.sink.write(event.model_dump_json() + "\n")
        self.sink.flush()
        if event.type == "progress":
            self.bar.update(
                self.task,
                completed=event.fraction,
                description=f"round {event.round}/{event.total_rounds}",
            )
