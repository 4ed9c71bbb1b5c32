"""The worker's preload against none, side by side: a parent that imported what the
worker's main process imports (``worker.tasks``), with or without
``tap_engine.preload.import_run_libraries``, forks a child as the prefork pool does; the
child builds the demo's engine and text scorer (setup), then evaluates every pooled test
set of the demo twice (the compute a run does, which the preload must not slow down).
Modes alternate, each parent a fresh process.

    PYTHONPATH=. python benchmarks/preload_fork.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parent(preload: bool, cache: str) -> dict[str, float]:
    """Run in a fresh process: import, maybe preload, fork, time the child's work."""
    import worker.tasks  # noqa: F401  (what the worker's main process has imported)

    figures = {"preload_s": 0.0}
    if preload:
        from tap_engine.preload import import_run_libraries

        figures["preload_s"] = import_run_libraries()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        os.write(write, json.dumps(child(cache)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        return figures | json.loads(pipe.read())


def child(cache: str) -> dict[str, float]:
    from tap_engine.config import resolve_config
    from tap_engine.data import pooled_test
    from tap_engine.evaluation import evaluate_task
    from tap_engine.runner import build_engine
    from tap_engine.text_metrics import TextScorer

    start = time.perf_counter()
    config = resolve_config("demo", None, {})
    engine = build_engine(config, cache)
    scorer = TextScorer(engine.tokenizer, None, None)
    setup = time.perf_counter() - start
    pools = pooled_test(engine.clients)
    start = time.perf_counter()
    for _ in range(2):
        for name, pool in pools.items():
            info = engine.infos[name]
            evaluate_task(engine.model, info, pool, config.eval_batch_size, engine.device, scorer)
    return {"child_setup_s": setup, "child_eval_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "tapfl-bench"))
    parser.add_argument("--mode", choices=["preload", "none"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:  # the fresh parent process
        print(json.dumps(parent(args.mode == "preload", args.cache)))
        return
    print(f"load average before: {os.getloadavg()}")
    results: dict[str, list[dict[str, float]]] = {"preload": [], "none": []}
    for _ in range(args.repeat):
        for mode in results:
            command = [sys.executable, __file__, "--mode", mode, "--cache", args.cache]
            out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
            results[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    for mode, runs in results.items():
        medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        shown = "  ".join(f"{k} {v:5.2f}" for k, v in medians.items())
        print(f"{mode:8s} (median of {len(runs)}): {shown}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
