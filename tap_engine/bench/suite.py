"""``tapfl bench``: the step floor, the engine's step and whole rounds side by side in this
process, then the scaling study (one fresh process per number of clients)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from tap_engine.bench.measure import cuda_peak_bytes, load_average, mib, peak_rss_bytes
from tap_engine.bench.rounds import RoundFigures, measure_rounds
from tap_engine.bench.scale import MARK
from tap_engine.bench.stand_in import stand_in_datasets
from tap_engine.bench.steps import StepFigures, measure_steps
from tap_engine.cache import cache_folder, default_cache_dir
from tap_engine.config import resolve_config
from tap_engine.runner import build_engine


@dataclass
class BenchOptions:
    preset: str = "demo"
    algorithm: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    step_clients: list[int] | None = None  # None: the first client of every distinct task set
    steps: int | None = None  # per timed repeat; None: the config's local_steps
    repeats: int = 5
    rounds: int = 3
    warmup: int = 1
    scaling: list[int] = field(default_factory=lambda: [1, 10, 30, 100])
    state_budget_mb: float | None = None  # memory for client states; None: no limit
    stand_in_data: bool = False  # random data shaped like the scenario's hub datasets
    cache_dir: Path = field(default_factory=default_cache_dir)  # backbones, data, stand-ins


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": gpu,
    }


def distinct_task_clients(tasks_per_client: list[tuple[str, ...]]) -> list[int]:
    seen: dict[tuple[str, ...], int] = {}
    for client, tasks in enumerate(tasks_per_client):
        seen.setdefault(tasks, client)
    return sorted(seen.values())


def run_bench(options: BenchOptions, say: Callable[[str], None] = print) -> dict[str, Any]:
    config = resolve_config(options.preset, options.algorithm, options.overrides)
    if options.stand_in_data:
        folder = cache_folder(options.cache_dir, "bench-stand-in")
        options.overrides = {**options.overrides, **stand_in_datasets(config, folder)}
        config = resolve_config(options.preset, options.algorithm, options.overrides)
    result: dict[str, Any] = {
        "preset": options.preset,
        "algorithm": config.algorithm,
        "backbone": config.backbone.name,
        "overrides": options.overrides,
        "state_budget_mb": options.state_budget_mb,
        "stand_in_data": options.stand_in_data,
        "machine": machine(),
        "load_average_before": load_average(),
    }
    say(_header(result, config))

    started = time.perf_counter()
    engine = build_engine(config, options.cache_dir)
    result["setup_s"] = time.perf_counter() - started
    result["device"] = str(engine.device)
    say(f"setup (backbone, data, model; once per run): {result['setup_s']:.1f} s\n")
    tasks = [tuple(t.name for t in c.tasks) for c in engine.clients]
    clients = options.step_clients or distinct_task_clients(tasks)
    steps = options.steps or config.local_steps or 1
    result["steps"] = []
    for client in clients:
        figures = measure_steps(engine, client, steps, options.repeats)
        result["steps"].append(asdict(figures))
        say(_step_lines(figures))

    with tempfile.TemporaryDirectory(prefix="tapfl-bench-") as workdir:
        rounds = measure_rounds(
            engine,
            Path(workdir),
            options.rounds,
            options.warmup,
            state_memory_budget_mb=options.state_budget_mb,
        )
    result["rounds"] = asdict(rounds)
    result["peak_rss_bytes"] = peak_rss_bytes()
    result["cuda_peak_bytes"] = cuda_peak_bytes(engine.device)
    say(_round_lines(rounds, result))

    result["scaling"] = []
    for n in options.scaling:
        size = _measure_size_in_child(options, n)
        result["scaling"].append(size)
        say(_scaling_line(size, result["scaling"][0]))
    if len(result["scaling"]) > 1:
        say(_scaling_summary(result["scaling"]))
    result["load_average_after"] = load_average()
    say(f"load average before {result['load_average_before']}, after {load_average()}")
    return result


def _measure_size_in_child(options: BenchOptions, n: int) -> dict[str, Any]:
    args = {
        "preset": options.preset,
        "algorithm": options.algorithm,
        "overrides": options.overrides,
        "clients": n,
        "rounds": options.rounds,
        "warmup": options.warmup,
        "cache_dir": str(options.cache_dir),
        "state_budget_mb": options.state_budget_mb,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "tap_engine.bench.scale", json.dumps(args)],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"scaling run with {n} clients failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len(MARK) :])


# ---------------------------------------------------------------- the printed report


def _header(result: dict[str, Any], config) -> str:
    m = result["machine"]
    budget = result["state_budget_mb"]
    return (
        f"tapfl bench: preset {result['preset']}, algorithm {config.algorithm}, "
        f"backbone {config.backbone.name}, device {config.device}\n"
        f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} "
        f"({m['torch_threads']} threads), GPU: {m['gpu'] or 'none'}\n"
        f"load average before: {result['load_average_before']}; "
        f"client-state memory budget: {'none' if budget is None else f'{budget} MiB'}\n"
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def _step_lines(f: StepFigures) -> str:
    return (
        f"step, client {f.client} ({', '.join(f.tasks)}; {f.trainable_parameters:,} trainable "
        f"parameters; batch {f.batch_size} x {f.grad_accum}; median of {f.repeats} x "
        f"{f.steps} steps)\n"
        f"  (a) forward + backward            {_ms(f.forward_backward_s)}\n"
        f"  (a) bare step: + clip, AdamW      {_ms(f.bare_step_s)}   <- the floor\n"
        f"  (b) engine step, with data        {_ms(f.engine_step_s)}\n"
        f"  overhead (b)/(a): {f.overhead:.3f}x the bare step, "
        f"{f.overhead_vs_forward_backward:.3f}x forward + backward\n"
    )


def _round_lines(r: RoundFigures, result: dict[str, Any]) -> str:
    return (
        f"(c) FL round: {r.clients} clients, {r.participants_per_round} per round, median of "
        f"{r.rounds} rounds after the warm-up\n"
        f"  turns + aggregation       {r.round_s:8.3f} s\n"
        f"  checkpoint                {r.checkpoint_s:8.3f} s  "
        f"({mib(r.checkpoint_bytes_per_round)} written)\n"
        f"  evaluation pass           {r.eval_pass_s:8.3f} s  (all clients; every "
        f"{r.eval_every} rounds)\n"
        f"  rounds per minute         {r.rounds_per_minute:8.2f}  "
        f"(with evaluation amortised: {r.rounds_per_minute_with_eval:.2f})\n"
        f"  traffic per round         down {mib(r.down_bytes_per_round)}, "
        f"up {mib(r.up_bytes_per_round)}  (whole model: trainable "
        f"{mib(r.trainable_bytes)}, frozen {mib(r.frozen_bytes)})\n"
        f"  peak memory               RSS {mib(result['peak_rss_bytes'])}, "
        f"CUDA {mib(result['cuda_peak_bytes'])}\n"
    )


def _scaling_line(size: dict[str, Any], first: dict[str, Any]) -> str:
    if size is first:
        header = (
            "scaling (one fresh process per size; at the end every client holds a state of its "
            "own, as after a long run):\n"
            f"  {'clients':>7} {'round s':>8} {'ckpt s':>7} {'eval s':>7} {'ckpt MiB':>9} "
            f"{'states in RAM':>13} {'all states':>10} {'data MiB':>9} {'peak RSS MiB':>12} "
            f"{'x 1st':>6}\n"
        )
    else:
        header = ""
    states = size["client_state_memory_bytes"] or 0
    total = size["client_state_total_bytes"] or 0
    return header + (
        f"  {size['clients']:>7} {size['round_s']:>8.3f} {size['checkpoint_s']:>7.3f} "
        f"{size['eval_pass_s']:>7.2f} {size['checkpoint_bytes_per_round'] / 2**20:>9.2f} "
        f"{states / 2**20:>13.2f} {total / 2**20:>10.2f} {size['data_bytes'] / 2**20:>9.1f} "
        f"{size['peak_rss_bytes'] / 2**20:>12.1f} "
        f"{size['peak_rss_bytes'] / first['peak_rss_bytes']:>6.2f}"
    )


def _scaling_summary(sizes: list[dict[str, Any]]) -> str:
    a, b = sizes[-2], sizes[-1]

    def grew(key: str) -> str:
        return mib((b[key] or 0) - (a[key] or 0))

    return (
        f"  from {a['clients']} to {b['clients']} clients: peak RSS +{grew('peak_rss_bytes')}, "
        f"client states in memory +{grew('client_state_memory_bytes')}, "
        f"data +{grew('data_bytes')}"
    )
