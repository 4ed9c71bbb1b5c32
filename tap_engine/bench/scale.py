"""One size of the scaling study, in a fresh process so that its peak memory is its own.

``python -m tap_engine.bench.scale '<json>'`` prints one line ``BENCH-RESULT <json>``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from tap_engine.bench.measure import cuda_peak_bytes, peak_rss_bytes, rss_bytes
from tap_engine.bench.rounds import measure_rounds
from tap_engine.bench.scenarios import scaled_config
from tap_engine.runner import Engine, build_engine

MARK = "BENCH-RESULT "


def data_bytes(engine: Engine) -> int:
    """The clients' tensorised train and test pools."""
    total = 0
    for client in engine.clients:
        for task in client.tasks:
            for pool in (task.train, task.test):
                for value in vars(pool).values():
                    if isinstance(value, torch.Tensor):
                        total += value.numel() * value.element_size()
    return total


def measure_size(args: dict[str, Any]) -> dict[str, Any]:
    config = scaled_config(args["preset"], args["algorithm"], args["overrides"], args["clients"])
    rss_start = rss_bytes()
    engine = build_engine(config, Path(args["cache_dir"]))
    rss_built = rss_bytes()
    with tempfile.TemporaryDirectory(prefix="tapfl-bench-") as workdir:
        rounds = measure_rounds(
            engine,
            Path(workdir),
            args["rounds"],
            args["warmup"],
            fill_states=True,
            state_memory_budget_mb=args["state_budget_mb"],
        )
    return {
        **asdict(rounds),
        "rss_start_bytes": rss_start,
        "rss_built_bytes": rss_built,
        "rss_end_bytes": rss_bytes(),
        "peak_rss_bytes": peak_rss_bytes(),
        "cuda_peak_bytes": cuda_peak_bytes(engine.device),
        "data_bytes": data_bytes(engine),
    }


def main() -> None:
    result = measure_size(json.loads(sys.argv[1]))
    print(MARK + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
