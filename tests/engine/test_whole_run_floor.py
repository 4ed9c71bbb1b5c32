"""The whole-run benchmark's floor counts the work the run did: each evaluation it
computed (not each one it reported) and each local training's micro-batches."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "whole_run.py"


@pytest.fixture(scope="module")
def whole_run():
    spec = importlib.util.spec_from_file_location("whole_run", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _evaluations(round_, stage, client, task, model, split, n, **metrics):
    return [
        {
            "type": "evaluation",
            "round": round_,
            "stage": stage,
            "client": client,
            "task": task,
            "model": model,
            "split": split,
            "metric": metric,
            "value": value,
            "n": n,
        }
        for metric, value in metrics.items()
    ]


def test_reported_again_is_not_computed_again(whole_run):
    events = [
        # the global model's pooled set, reported for both clients: one forward pass
        *_evaluations(2, "fl", 0, "vqa", "global", "pooled", 40, loss=1.5, chrf=20.0),
        *_evaluations(2, "fl", 1, "vqa", "global", "pooled", 40, loss=1.5, chrf=20.0),
        # each client's own set: two
        *_evaluations(2, "fl", 0, "vqa", "global", "local", 20, loss=1.4, chrf=21.0),
        *_evaluations(2, "fl", 1, "vqa", "global", "local", 20, loss=1.6, chrf=19.0),
        # a personal model on the pooled set: another
        *_evaluations(2, "fl", 0, "vqa", "personal", "pooled", 40, loss=1.2, chrf=25.0),
        # the last round's global model again in stage 2: the same values, no forward
        *_evaluations(2, "post", 0, "vqa", "global", "pooled", 40, loss=1.5, chrf=20.0),
        # a constant answer has no forward at all
        *_evaluations(2, "fl", 0, "vqa", "constant", "pooled", 40, chrf=5.0),
        {"type": "round_started", "round": 2},
    ]
    assert sorted(whole_run.forwarded_sets(events)) == [
        ("vqa", 20),
        ("vqa", 20),
        ("vqa", 40),
        ("vqa", 40),
    ]


def test_trainings_count_micro_batches_and_distillation(whole_run):
    events = [
        {"type": "local_training", "client": 3, "steps": 2, "micro_batches": 2,
         "extra_losses": {}},
        {"type": "local_training", "client": 3, "steps": 1, "micro_batches": 4,
         "extra_losses": {"kd": 0.1}},
        {"type": "evaluation", "model": "global"},
    ]  # fmt: skip
    assert whole_run.trainings(events) == [(3, 2, False), (3, 4, True)]
