"""Whole FL rounds as ``tapfl run`` plays them: the participants' turns and aggregation, the
per-round checkpoint, and an evaluation pass; with the bytes that cross between server and
clients and the bytes the checkpoint writes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tap_engine.bench.measure import median, synchronize
from tap_engine.checkpoint import config_fingerprint
from tap_engine.context import Context
from tap_engine.events import Event, RoundTraffic
from tap_engine.models.state import nbytes
from tap_engine.runner import (
    Engine,
    Evaluator,
    play_round,
    storage_for,
    unique_frozen_parameters,
    write_checkpoint,
)


class TrafficMeter:
    """An observer that adds up the run's own ``round_traffic`` events: the bench reports
    the very bytes a run stores, not a count of its own."""

    def __init__(self) -> None:
        self.down_bytes = 0
        self.up_bytes = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, RoundTraffic):
            if event.direction == "down":
                self.down_bytes += event.bytes
            else:
                self.up_bytes += event.bytes


@dataclass
class RoundFigures:
    clients: int
    participants_per_round: int
    rounds: int  # timed, after the warm-up rounds
    round_s: float  # median: turns + aggregation
    checkpoint_s: float  # median
    eval_pass_s: float  # every model of every client, as every eval_every-th round does
    eval_every: int
    rounds_per_minute: float  # rounds with their checkpoint, without evaluation
    rounds_per_minute_with_eval: float  # evaluation amortised over eval_every rounds
    down_bytes_per_round: float  # server -> clients (median)
    up_bytes_per_round: float  # clients -> server
    trainable_bytes: int  # the whole server model's trainable state
    frozen_bytes: int  # the frozen backbone's tensors, counted once
    checkpoint_bytes_per_round: float  # written to disk (median)
    client_state_memory_bytes: int | None  # per-client states held in memory at the end
    client_states_filled: bool  # every client given a state of its own before the end
    client_state_total_bytes: int | None  # every client's state, in memory or on disk
    round_times_s: list[float] = field(default_factory=list)


def _written(folder: Path, before: dict[Path, tuple[int, int]]) -> int:
    """Bytes of the files under ``folder`` that are new or changed since ``before``."""
    now = _listing(folder)
    return sum(size for path, (size, mtime) in now.items() if before.get(path) != (size, mtime))


def _listing(folder: Path) -> dict[Path, tuple[int, int]]:
    out = {}
    for path in folder.rglob("*"):
        if path.is_file():
            stat = path.stat()
            out[path] = (stat.st_size, stat.st_mtime_ns)
    return out


def fill_client_states(algorithm) -> None:
    """Give every client a state of its own, as after a long run where every client has
    trained: the steady state of memory (clients that never trained hold views)."""
    personal = getattr(algorithm, "personal", None)
    for client in range(len(personal) if personal is not None else 0):
        personal[client] = {k: v.clone() for k, v in personal[client].items()}


def measure_rounds(
    engine: Engine,
    workdir: Path,
    rounds: int,
    warmup: int,
    fill_states: bool = False,
    state_memory_budget_mb: float | None = None,
) -> RoundFigures:
    config, device, model = engine.config, engine.device, engine.model
    algorithm = engine.new_algorithm(storage_for(workdir, state_memory_budget_mb))
    meter = TrafficMeter()
    ctx = Context(
        config,
        engine.clients,
        model,
        engine.trainer,
        engine.components,
        engine.infos,
        meter,
        lambda: False,
    )
    fingerprint = config_fingerprint(config)
    round_s, checkpoint_s, down, up, written = [], [], [], [], []
    for r in range(warmup + rounds):
        meter.down_bytes = meter.up_bytes = 0
        synchronize(device)
        start = time.perf_counter()
        play_round(ctx, algorithm, r)
        synchronize(device)
        middle = time.perf_counter()
        before = _listing(workdir)
        write_checkpoint(workdir, r + 1, fingerprint, algorithm)
        end = time.perf_counter()
        if r >= warmup:
            round_s.append(middle - start)
            checkpoint_s.append(end - middle)
            down.append(meter.down_bytes)
            up.append(meter.up_bytes)
            written.append(_written(workdir, before))

    if fill_states:
        fill_client_states(algorithm)
    evaluator = Evaluator(engine, lambda event: None)
    synchronize(device)
    start = time.perf_counter()
    for client in engine.clients:
        evaluator.evaluate(client.client, algorithm.eval_states(client.client), ctx)
    synchronize(device)
    eval_s = time.perf_counter() - start

    per_round = median(round_s) + median(checkpoint_s)
    personal = getattr(algorithm, "personal", None)
    frozen = unique_frozen_parameters(model) * next(model.parameters()).element_size()
    return RoundFigures(
        clients=len(engine.clients),
        participants_per_round=config.clients_per_round,
        rounds=rounds,
        round_s=median(round_s),
        checkpoint_s=median(checkpoint_s),
        eval_pass_s=eval_s,
        eval_every=config.eval_every,
        rounds_per_minute=60 / per_round,
        rounds_per_minute_with_eval=60 / (per_round + eval_s / config.eval_every),
        down_bytes_per_round=median(down),
        up_bytes_per_round=median(up),
        trainable_bytes=nbytes(engine.trainer.params.params),
        frozen_bytes=frozen,
        checkpoint_bytes_per_round=median(written),
        client_state_memory_bytes=None if personal is None else personal.memory_bytes,
        client_states_filled=fill_states,
        client_state_total_bytes=None if personal is None else personal.total_bytes,
        round_times_s=round_s,
    )
