"""``tapfl bench`` runs at a tiny size and prints its figures (the figures themselves are
measurements, reported in docs/PERFORMANCE.md, never asserted here)."""

from __future__ import annotations

import json
from pathlib import Path

from tap_engine.bench.suite import distinct_task_clients
from tests.engine.test_cli import tapfl


def test_bench_prints_step_round_traffic_memory_and_scaling_figures(tmp_path: Path):
    out = tmp_path / "bench.json"
    proc = tapfl(
        "bench",
        "--clients",
        "1,2",
        "--step-clients",
        "0",
        "--steps",
        "1",
        "--repeats",
        "1",
        "--rounds",
        "1",
        "--warmup",
        "0",
        "--set",
        "batch_size=4",
        "--set",
        "local_steps=1",
        "--set",
        "eval_max_samples=4",
        "--json",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    for figure in (
        "(a) forward + backward",
        "(a) bare step",
        "(b) engine step",
        "overhead (b)/(a)",
        "rounds per minute",
        "traffic per round",
        "peak memory",
        "scaling",
    ):
        assert figure in proc.stdout, figure
    result = json.loads(out.read_text())
    assert [s["clients"] for s in result["scaling"]] == [1, 2]
    rounds = result["rounds"]
    # what crosses the network is trainable state only: never more than every participant
    # holding the whole server model's trainable tensors
    assert 0 < rounds["down_bytes_per_round"] == rounds["up_bytes_per_round"]
    assert (
        rounds["up_bytes_per_round"] <= rounds["participants_per_round"] * rounds["trainable_bytes"]
    )
    assert result["peak_rss_bytes"] > 0 and result["steps"][0]["engine_step_s"] > 0


def test_one_client_is_measured_per_distinct_task_set():
    tasks = [("a",), ("a",), ("a", "b"), ("c",), ("a", "b")]
    assert distinct_task_clients(tasks) == [0, 2, 3]
