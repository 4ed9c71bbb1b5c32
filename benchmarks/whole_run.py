"""A whole ``tapfl run`` of the paper's FLAVA scenario on stand-in data, timed from process
start to exit, twice: with a cold cache (tiny backbone and preprocessed data built) and a
warm one. The run's events.jsonl lines are stamped as they appear, which splits the run into
startup (process start to round 1), rounds, evaluation after the last round, and stage 2
(training and its evaluations). Beside them: what startup's parts cost on their own
(imports, backbone, data) and the floor, the bare training steps plus one forward per
evaluated example at the eval batch size.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/whole_run.py  # width 48, image 32
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/whole_run.py --paper-size  # 64, image 224
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

JOB = {
    "rounds": 2,
    "clients_per_round": 2,
    "local_steps": 2,
    "batch_size": 8,
    "grad_accum": 1,
    "warmup_rounds": 1,
    "post_iterations": 4,
    "eval_every": 1000,  # past the end: the evaluations after the last round only
    "scenario.max_train": 64,
    "scenario.max_test": 64,
    "backbone.name": "flava-tiny",
}
Stamps = list[tuple[float, dict]]


def _timed_python(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - start


def _watch(path: Path, stamps: Stamps, done: threading.Event) -> None:
    """Stamp each events.jsonl line when it appears (the engine flushes every event). Only
    new bytes are read: rereading a file of thousands of lines every 20 ms would take CPU
    from the run being timed."""
    offset, partial = 0, b""
    while True:
        finished = done.is_set()
        if path.exists():
            with path.open("rb") as events:
                events.seek(offset)
                chunk = events.read()
            offset += len(chunk)
            now = time.perf_counter()
            *lines, partial = (partial + chunk).split(b"\n")
            stamps += [(now, json.loads(line)) for line in lines if line.strip()]
        if finished:
            return
        time.sleep(0.02)


def timed_run(overrides: dict[str, object], cache: Path, out: Path) -> dict[str, float]:
    command = [sys.executable, "-m", "tap_engine.cli", "run", "--preset", "paper-flava"]
    command += ["--quiet", "-o", str(out), "--cache-dir", str(cache)]
    for key, value in overrides.items():
        command += ["--set", f"{key}={value}"]
    stamps: Stamps = []
    done = threading.Event()
    watcher = threading.Thread(target=_watch, args=(out / "events.jsonl", stamps, done))
    start = time.perf_counter()
    watcher.start()
    proc = subprocess.run(command, capture_output=True, text=True)
    end = time.perf_counter()
    done.set()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return split_phases(stamps, start, end)


def split_phases(stamps: Stamps, start: float, end: float) -> dict[str, float]:
    first_round = next(t for t, e in stamps if e["type"] == "round_started")
    post = [t for t, e in stamps if e.get("stage") == "post"]
    first_post = post[0] if post else end
    last_fl = max(t for t, e in stamps if e.get("stage") == "fl" and e["type"] != "evaluation")
    # Stage 2's evaluations: each burst of evaluation lines, from the event before it.
    post_eval, previous = 0.0, first_post
    for t, e in stamps:
        if t < first_post:
            continue
        if e["type"] == "evaluation":
            post_eval += t - previous
        previous = t
    return {
        "startup_s": first_round - start,
        "rounds_s": last_fl - first_round,
        "eval_after_last_round_s": first_post - last_fl,
        "stage2_train_s": max(0.0, post[-1] - first_post - post_eval) if post else 0.0,
        "stage2_eval_s": post_eval,
        "exit_s": end - stamps[-1][0],
        "whole_s": end - start,
        "evaluated_examples": _evaluated(stamps),
    }


def _evaluated(stamps: Stamps) -> int:
    sets = {}
    for _, e in stamps:
        if e["type"] == "evaluation":
            key = (e["round"], e["stage"], e["client"], e["task"], e["model"], e["split"])
            sets[key] = e["n"]
    return sum(sets.values())


def parts_and_floor(overrides: dict[str, object], cache: Path, evaluated: int) -> dict[str, float]:
    """Startup's parts in this process (imports already paid, cache warm), and the floor."""
    import torch

    from tap_engine.bench.measure import median, timed
    from tap_engine.bench.steps import BareStep
    from tap_engine.config import parse_override, resolve_config
    from tap_engine.data import build_clients
    from tap_engine.models.backbones import load_backbone
    from tap_engine.runner import build_engine

    sets = dict(parse_override(f"{k}={v}") for k, v in overrides.items())
    config = resolve_config("paper-flava", None, sets)
    start = time.perf_counter()
    backbone = load_backbone(config.backbone, cache)
    backbone_s = time.perf_counter() - start
    start = time.perf_counter()
    build_clients(config, backbone.tokenizer, cache)
    data_s = time.perf_counter() - start

    engine = build_engine(config, cache)
    device = engine.device
    bare = BareStep(engine, 0, config.min_lr or 1e-3)
    bare()
    step_s = median([timed(bare, device) for _ in range(3)])
    steps = config.rounds * config.clients_per_round * (config.local_steps or 1)
    steps += len(engine.clients) * max(1, config.post_iterations // config.grad_accum)
    task = engine.clients[0].tasks[0]
    rows = torch.arange(min(config.eval_batch_size, len(task.test)))
    batch = task.test.batch(rows, device)
    info = engine.infos[task.name]
    engine.model.eval()
    with torch.no_grad():
        engine.model(info, batch)
        forward_s = median([timed(lambda: engine.model(info, batch), device) for _ in range(3)])
    per_example = forward_s / len(rows)
    return {
        "backbone_warm_s": backbone_s,
        "data_warm_s": data_s,
        "bare_step_s": step_s,
        "bare_steps": steps,
        "forward_per_example_s": per_example,
        "floor_s": steps * step_s + evaluated * per_example,
    }


def _show(figures: dict[str, float]) -> None:
    for key, value in figures.items():
        shown = f"{value:8.3f}" if isinstance(value, float) else f"{value:8d}"
        print(f"  {key:26s} {shown}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper-size", action="store_true", help="width 64, image 224 (slow)")
    parser.add_argument("--stand-in-rows", type=int, default=200, help="train rows per dataset")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    overrides: dict[str, object] = dict(JOB)
    if args.paper_size:
        overrides |= {"backbone.tiny_hidden_size": 64, "backbone.image_size": 224}
    else:
        overrides |= {"backbone.tiny_hidden_size": 48}
    print(f"load average before: {os.getloadavg()}")
    print("imports (python -c ...):")
    print(f"  python alone                 {_timed_python('pass'):.2f} s")
    floor = "import torch, peft; from transformers import FlavaModel, AutoTokenizer"
    print(f"  torch, transformers, peft    {_timed_python(floor):.2f} s  (the floor)")
    engine = "import tap_engine.cli, tap_engine.runner"
    print(f"  tap_engine.cli + runner      {_timed_python(engine):.2f} s")

    from tap_engine.bench.stand_in import stand_in_datasets
    from tap_engine.config import resolve_config

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = resolve_config("paper-flava", None, {})
        rows = args.stand_in_rows
        overrides |= stand_in_datasets(config, folder / "stand-in", rows, rows // 4)
        figures = {}
        for label in ("cold", "warm"):
            figures[label] = timed_run(overrides, folder / "cache", folder / f"run-{label}")
            print(f"tapfl run, {label} cache:")
            _show(figures[label])
        evaluated = figures["warm"]["evaluated_examples"]
        print("startup's parts (one process, cache warm) and the floor:")
        _show(parts_and_floor(overrides, folder / "cache", evaluated))
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
