"""Startup of the whole-run job (benchmarks/whole_run.py JOB): process start to the first
round_started event, cold cache then warm, in wall and CPU seconds (user + sys of the
child). The run is stopped at round 1; only startup is timed.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/startup.py [--warm-runs 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from whole_run import JOB


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def startup(overrides: dict[str, object], cache: Path, out: Path) -> tuple[float, float]:
    """(wall s, CPU s) from process start to the first round_started line."""
    command = [sys.executable, "-m", "tap_engine.cli", "run", "--preset", "paper-flava"]
    command += ["--quiet", "-o", str(out), "--cache-dir", str(cache)]
    for key, value in overrides.items():
        command += ["--set", f"{key}={value}"]
    events = out / "events.jsonl"
    cpu = _child_cpu()
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while b'"round_started"' not in (events.read_bytes() if events.exists() else b""):
        if proc.poll() is not None:
            raise SystemExit(proc.stderr.read().decode()[-3000:] if proc.stderr else "failed")
        time.sleep(0.02)
    wall = time.perf_counter() - start
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return wall, _child_cpu() - cpu  # CPU includes the few ms between the line and the kill


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm-runs", type=int, default=3)
    parser.add_argument("--stand-in-rows", type=int, default=200)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from tap_engine.bench.stand_in import stand_in_datasets
    from tap_engine.config import resolve_config

    overrides: dict[str, object] = dict(JOB) | {"backbone.tiny_hidden_size": 48}
    print(f"load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = args.stand_in_rows
        config = resolve_config("paper-flava", None, {})
        overrides |= stand_in_datasets(config, folder / "stand-in", rows, rows // 4)
        runs = ["cold"] + ["warm"] * args.warm_runs
        for i, label in enumerate(runs):
            wall, cpu = startup(overrides, folder / "cache", folder / f"run-{i}")
            print(f"startup, {label} cache: {wall:6.2f} s wall {cpu:6.2f} s CPU")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
