"""``tapfl worker``: the Celery workers of one machine, one process per GPU.

With ``--gpus 0,1`` it starts one ``celery worker`` per GPU, each seeing only its GPU
(``CUDA_VISIBLE_DEVICES``), consuming the ``gpu`` queue with concurrency 1 under the node
name ``gpu<N>@<host>``: a run owns its GPU. Without ``--gpus`` it starts one CPU worker on
the ``cpu`` queue that sees no GPU at all. It restarts a worker that exits on its own (with
a growing pause, so a broken setup does not spin) and, on SIGTERM or Ctrl-C, stops them
all: each asks its run to stop after the current local step and puts it back in the queue,
where another worker resumes it from its last checkpoint.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from backend.queue import CPU_QUEUE, GPU_QUEUE, QUEUES

console = Console()
CELERY_APP = "worker.celery_app:app"
_GPU_ID = re.compile(r"^(\d+|(GPU|MIG)-[0-9A-Za-z-]+)$")
RESTART_PAUSE_S = (1.0, 60.0)  # first pause after an unexpected exit, and the longest
STABLE_AFTER_S = 120.0  # a worker that ran this long before exiting restarts at once


@dataclass
class WorkerSpec:
    node: str  # Celery node name, unique per machine
    queues: list[str]
    env: dict[str, str]
    concurrency: int = 1

    def command(self, loglevel: str) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            CELERY_APP,
            "worker",
            "-Q",
            ",".join(self.queues),
            "--concurrency",
            str(self.concurrency),
            "--pool",
            "prefork",
            "--hostname",
            self.node,
            "--loglevel",
            loglevel,
            # Workers need not talk to each other (SQL coordinates the runs).
            "--without-gossip",
            "--without-mingle",
        ]


def parse_gpus(text: str) -> list[str]:
    """``"0,1"`` -> ``["0", "1"]``; ``"all"``: every GPU ``nvidia-smi`` lists."""
    if text.strip() == "all":
        return detect_gpus()
    gpus = [part.strip() for part in text.split(",")]
    for gpu in gpus:
        if not _GPU_ID.match(gpu):
            raise typer.BadParameter(
                f"{gpu!r} is not a GPU index or UUID; give indices like 0,1 (or 'all')",
                param_hint="--gpus",
            )
    if len(set(gpus)) != len(gpus):
        raise typer.BadParameter(f"a GPU is listed twice in {text!r}", param_hint="--gpus")
    return gpus


def detect_gpus() -> list[str]:
    smi = shutil.which("nvidia-smi")
    listing = subprocess.run([smi, "-L"], capture_output=True, text=True) if smi else None
    if listing is None or listing.returncode != 0:
        raise typer.BadParameter("no NVIDIA GPU found (nvidia-smi -L)", param_hint="--gpus")
    count = sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))
    if count == 0:
        raise typer.BadParameter("nvidia-smi lists no GPU", param_hint="--gpus")
    return [str(i) for i in range(count)]


def plan(
    gpus: list[str] | None, queues: list[str] | None, name: str, concurrency: int
) -> list[WorkerSpec]:
    """The workers to run: one per GPU, or one CPU worker."""
    host = socket.gethostname()
    prefix = f"{name}-" if name else ""
    base = dict(os.environ)
    base.setdefault("PYTHONUNBUFFERED", "1")
    if gpus:
        return [
            WorkerSpec(
                node=f"{prefix}gpu{i}@{host}",
                queues=queues or [GPU_QUEUE],
                env={**base, "CUDA_VISIBLE_DEVICES": gpu},
            )
            for i, gpu in enumerate(gpus)
        ]
    # A CPU worker must not pick a GPU up behind its queue's back.
    env = {**base, "CUDA_VISIBLE_DEVICES": ""}
    return [WorkerSpec(f"{prefix}cpu@{host}", queues or [CPU_QUEUE], env, concurrency)]


@dataclass
class Child:
    spec: WorkerSpec
    proc: subprocess.Popen[bytes]
    started: float
    failures: int = 0
    restart_at: float | None = None


@dataclass
class Supervisor:
    specs: list[WorkerSpec]
    loglevel: str = "INFO"
    logs: Path | None = None
    stop_timeout_s: float = 120.0
    children: list[Child] = field(default_factory=list)

    def _spawn(self, spec: WorkerSpec) -> subprocess.Popen[bytes]:
        out: int | object = None
        if self.logs is not None:
            self.logs.mkdir(parents=True, exist_ok=True)
            out = (self.logs / f"{spec.node.split('@')[0]}.log").open("ab")
        try:
            # Own session: Ctrl-C reaches this supervisor only, which stops each worker once.
            proc = subprocess.Popen(
                spec.command(self.loglevel),
                env=spec.env,
                start_new_session=True,
                stdout=out,
                stderr=subprocess.STDOUT if out else None,  # type: ignore[arg-type]
            )
        finally:
            if hasattr(out, "close"):
                out.close()  # type: ignore[union-attr]
        gpu = spec.env.get("CUDA_VISIBLE_DEVICES")
        sees = f"GPU {gpu}" if gpu else "no GPU"
        console.print(
            f"started {spec.node} (pid {proc.pid}, queues {','.join(spec.queues)}, {sees})"
        )
        return proc

    def start(self) -> None:
        now = time.monotonic()
        self.children = [Child(spec, self._spawn(spec), now) for spec in self.specs]

    def check(self) -> None:
        """Restart workers that exited, each after its pause."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.proc, child.started, child.restart_at = self._spawn(child.spec), now, None
                continue
            code = child.proc.poll()
            if code is None:
                continue
            child.failures = 0 if now - child.started >= STABLE_AFTER_S else child.failures + 1
            first, longest = RESTART_PAUSE_S
            pause = 0.0 if child.failures == 0 else min(longest, first * 2 ** (child.failures - 1))
            console.print(
                f"[yellow]{child.spec.node} exited with code {code}; restarting in {pause:.0f} s"
            )
            child.restart_at = now + pause

    def stop(self) -> None:
        """SIGTERM to every worker (each re-queues its run), SIGKILL what is left at the end."""
        running = [c.proc for c in self.children if c.proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for proc in running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                console.print(f"[red]pid {proc.pid} did not stop in time; killing it")
                proc.kill()
                proc.wait(timeout=10)


def worker(
    gpus: Annotated[
        str | None,
        typer.Option(help="GPUs to run on, one worker each: indices like 0,1 or 'all'"),
    ] = None,
    queues: Annotated[
        str | None,
        typer.Option(
            help=f"queues to consume (default: {GPU_QUEUE} with --gpus, else {CPU_QUEUE})"
        ),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, help="runs at once of the CPU worker (GPU workers: 1 per GPU)")
    ] = 1,
    name: Annotated[
        str, typer.Option(help="prefix of the node names, for several `tapfl worker` per host")
    ] = "",
    loglevel: Annotated[str, typer.Option(help="Celery log level")] = "INFO",
    logs: Annotated[
        Path | None, typer.Option(help="write each worker's output to DIR/<node>.log")
    ] = None,
    stop_timeout: Annotated[
        float, typer.Option(help="seconds to wait for the workers to stop before killing them")
    ] = 120.0,
) -> None:
    """Start this machine's workers: one per GPU (--gpus 0,1), or one CPU worker."""
    gpu_list = parse_gpus(gpus) if gpus is not None else None
    queue_list = None
    if queues is not None:
        queue_list = [q.strip() for q in queues.split(",") if q.strip()]
        unknown = sorted(set(queue_list) - set(QUEUES))
        if not queue_list or unknown:
            raise typer.BadParameter(
                f"unknown queue(s) {', '.join(unknown) or '(none)'}; choose from "
                f"{', '.join(QUEUES)}",
                param_hint="--queues",
            )
    if gpu_list and concurrency != 1:
        raise typer.BadParameter("a GPU worker runs one run at a time", param_hint="--concurrency")

    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    supervisor = Supervisor(
        plan(gpu_list, queue_list, name, concurrency), loglevel, logs, stop_timeout
    )
    supervisor.start()
    try:
        while not stopping.wait(1.0):
            supervisor.check()
    finally:
        console.print("stopping the workers; their runs go back to the queue...")
        supervisor.stop()
