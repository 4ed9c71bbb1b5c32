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
import functools
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
DRAWS = 4  # batches drawn per client task set for the training floor


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


def timed_run(
    overrides: dict[str, object], cache: Path, out: Path
) -> tuple[dict[str, float], list[dict]]:
    """The run's phases, and its events."""
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
    return split_phases(stamps, start, end), [e for _, e in stamps]


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
    phases = {
        "startup_s": first_round - start,
        "rounds_s": last_fl - first_round,
        "eval_after_last_round_s": first_post - last_fl,
        "stage2_train_s": max(0.0, post[-1] - first_post - post_eval) if post else 0.0,
        "stage2_eval_s": post_eval,
        "exit_s": end - stamps[-1][0],
        "whole_s": end - start,
    }
    phases["evaluation_s"] = phases["eval_after_last_round_s"] + phases["stage2_eval_s"]
    return phases


def forwarded_sets(events: list[dict]) -> list[tuple[str, int]]:
    """(task, examples) of every evaluation the run computed: the reported evaluations less
    those it reported again without computing them (the global model's pooled set, reported
    for each client; the last round's models, reported again in stage 2), which carry the
    very same metrics on the same set. The constant answer has no forward."""
    reported: dict[tuple, dict[str, float]] = {}
    sizes: dict[tuple, int] = {}
    for e in events:
        if e["type"] == "evaluation" and e["model"] != "constant":
            key = (e["round"], e["stage"], e["client"], e["task"], e["model"], e["split"])
            reported.setdefault(key, {})[e["metric"]] = e["value"]
            sizes[key] = e["n"]
    computed: dict[tuple, int] = {}
    for key, metrics in reported.items():
        _, _, client, task, _, split = key
        data = (task, split, None if split == "pooled" else client)
        computed[(*data, tuple(sorted(metrics.items())))] = sizes[key]
    return [(key[0], n) for key, n in computed.items()]


def trainings(events: list[dict]) -> list[tuple[int, int, bool]]:
    """(client, micro-batches, distilled) of every local training of the run."""
    return [
        (e["client"], e["micro_batches"] or e["steps"], "kd" in e["extra_losses"])
        for e in events
        if e["type"] == "local_training"
    ]


def _forward_all(model, info, batches) -> None:
    for batch in batches:
        model(info, batch)


def parts_and_floor(
    overrides: dict[str, object], cache: Path, events: list[dict]
) -> dict[str, float]:
    """Startup's parts in this process (imports already paid, cache warm), and the floor of
    the run's work: each local training's micro-batches as bare steps of that client's
    tasks (forward, backward, clipping, AdamW, nothing else), plus a teacher forward for a
    distilled one; each computed evaluation as plain forwards of its examples in batches of
    the eval batch size, at the per-example cost of that task's pooled test set."""
    import torch

    from tap_engine.bench.measure import median, timed
    from tap_engine.bench.steps import BareStep
    from tap_engine.config import parse_override, resolve_config
    from tap_engine.data import build_clients, pooled_test
    from tap_engine.evaluation import length_batches
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
    device, lr = engine.device, config.min_lr or 1e-3
    # KD over every predicted position pads text targets to the head's length.
    kd_width = None if config.kd_text_positions == "target" else config.backbone.max_target_length
    step_cost: dict[tuple, float] = {}  # per (task set, distilled): s per micro-batch

    def micro_batch_s(client: int, distilled: bool) -> float:
        """Mean over DRAWS draws of the client's mixed batch (its cost depends on how many
        rows of each task it holds), the median of three steps each."""
        key = (tuple(t.name for t in engine.clients[client].tasks), distilled)
        if key not in step_cost:
            costs = []
            for seed in range(DRAWS):
                bare = BareStep(engine, client, lr, kd_width if distilled else None, seed)
                bare(), bare.forward_only()  # warm-up
                seconds = median([timed(bare, device) for _ in range(3)])
                if distilled:
                    seconds += median([timed(bare.forward_only, device) for _ in range(3)])
                costs.append(seconds / len(bare.micro))
            step_cost[key] = sum(costs) / len(costs)
        return step_cost[key]

    train_floor = sum(n * micro_batch_s(c, kd) for c, n, kd in trainings(events))

    engine.model.eval()
    per_example: dict[str, float] = {}
    with torch.no_grad():
        for name, pool in pooled_test(engine.clients).items():
            info = engine.infos[name]
            batches = [pool.batch(i, device) for i in length_batches(pool, config.eval_batch_size)]
            engine.model(info, batches[0])  # warm-up
            forward = functools.partial(_forward_all, engine.model, info, batches)
            per_example[name] = timed(forward, device) / len(pool)
    forwarded = forwarded_sets(events)
    eval_floor = sum(n * per_example[task] for task, n in forwarded)
    return {
        "backbone_warm_s": backbone_s,
        "data_warm_s": data_s,
        "micro_batches": sum(n for _, n, _ in trainings(events)),
        "train_floor_s": train_floor,
        "evaluated_examples": sum(n for _, n in forwarded),
        "eval_floor_s": eval_floor,
        "floor_s": train_floor + eval_floor,
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
        figures, events = {}, []
        for label in ("cold", "warm"):
            figures[label], events = timed_run(overrides, folder / "cache", folder / f"run-{label}")
            print(f"tapfl run, {label} cache:")
            _show(figures[label])
        print("startup's parts (one process, cache warm) and the floor:")
        floor = parts_and_floor(overrides, folder / "cache", events)
        _show(floor)
        warm = figures["warm"]
        print("warm run against its floor:")
        print(f"  whole / floor              {warm['whole_s'] / floor['floor_s']:8.2f}x")
        print(f"  evaluation / its floor     {warm['evaluation_s'] / floor['eval_floor_s']:8.2f}x")
        train_s = warm["rounds_s"] + warm["stage2_train_s"]
        print(f"  training / its floor       {train_s / floor['train_floor_s']:8.2f}x")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
