"""The rows of one large finished TAP run, for the dashboard and API benchmarks: ``clients``
clients (every third holds a second task), an evaluation every ``eval_every`` rounds, a loss
per client, task and model every round, and a few replacement events per client. The values
are deterministic and roughly plausible (the personal model best on its own data and worse on
the pooled data); only their number and shape matter to a benchmark."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

CLASSIFY = "digits_image_classification"
GENERATE = "digits_image_generation"
TASK_METRICS = {CLASSIFY: ("accuracy", "loss"), GENERATE: ("mse", "loss")}
# A model's offset on a split: personalization gains locally and costs on the pooled data.
BONUS = {
    ("global", "local"): 0.0,
    ("global", "pooled"): -0.02,
    ("personal", "local"): 0.06,
    ("personal", "pooled"): -0.05,
    ("final", "local"): 0.05,
    ("final", "pooled"): 0.01,
}


@dataclass
class LargeRun:
    metrics: list[dict[str, Any]] = field(default_factory=list)
    losses: list[dict[str, Any]] = field(default_factory=list)
    replacements: list[dict[str, Any]] = field(default_factory=list)


def metric_row(
    r: int, stage: str, client: int, task: str, model: str, split: str, metric: str
) -> dict[str, Any]:
    base = 0.5 + 0.08 * min(r, 5) + 0.0005 * r + BONUS[(model, split)]
    value = base if metric == "accuracy" else 1.0 / (1.0 + base) + 0.01 * (client % 5)
    return {
        "round": r,
        "stage": stage,
        "client": client,
        "task": task,
        "model": model,
        "split": split,
        "metric": metric,
        "value": round(value, 4),
        "n": 50,
    }


def large_run(clients: int = 30, rounds: int = 200, eval_every: int = 1) -> LargeRun:
    tasks_of = {c: [CLASSIFY, GENERATE] if c % 3 == 1 else [CLASSIFY] for c in range(clients)}
    eval_rounds = list(range(eval_every, rounds + 1, eval_every))
    run = LargeRun()
    for client, tasks in tasks_of.items():
        for task in tasks:
            for metric in TASK_METRICS[task]:
                for model, split in itertools.product(("global", "personal"), ("local", "pooled")):
                    run.metrics += [
                        metric_row(r, "fl", client, task, model, split, metric) for r in eval_rounds
                    ]
                for split in ("local", "pooled"):
                    run.metrics.append(
                        metric_row(rounds, "post", client, task, "final", split, metric)
                    )
            for model, r in itertools.product(("global", "personal"), range(1, rounds + 1)):
                loss = round(2.0 / r + (0.1 if model == "global" else 0.0), 4)
                run.losses.append(
                    {
                        "round": r,
                        "stage": "fl",
                        "client": client,
                        "model": model,
                        "task": task,
                        "loss": loss,
                        "steps": 10,
                    }
                )
        for index, task in enumerate(tasks):
            if (client + index) % 2:
                continue
            run.replacements += [
                {
                    "round": 2 + 2 * ((client + index) % 3) + 10 * k,
                    "client": client,
                    "task": task,
                    "global_loss": 0.8,
                    "personal_loss": 0.9,
                    "margin": 0.01,
                    "parameters_copied": 12_345,
                }
                for k in range(rounds // 20)
            ]
    return run
