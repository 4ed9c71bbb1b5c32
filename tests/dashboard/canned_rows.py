"""Canned per-client rows (metrics, losses, stage-2 steps) shaped like the API's, for the
chart unit tests: a small version of the demo preset, one client with two tasks, with
deterministic values (the personal model best on its own data, worse on everyone's)."""

from __future__ import annotations

import itertools
from typing import Any

CLASSIFY = "digits_image_classification"
GENERATE = "digits_image_generation"
# client -> tasks, like a smaller demo preset: client 1 holds two tasks.
CLIENT_TASKS: dict[int, list[str]] = {0: [CLASSIFY], 1: [CLASSIFY, GENERATE], 2: [GENERATE]}
TASK_METRICS = {CLASSIFY: ["accuracy", "loss"], GENERATE: ["mse", "loss"]}
EVAL_ROUNDS = [0, 2, 4]
PANELS = [(client, task) for client, tasks in CLIENT_TASKS.items() for task in tasks]


# Per algorithm, a shift of the personalized/final models on each split: TAP personalizes
# best at little cost in generalization, local personalizes but generalizes badly.
ALGORITHM_SHIFT: dict[str, dict[str, float]] = {
    "tap": {"local": 0.0, "pooled": 0.0},
    "fedavg": {"local": -0.06, "pooled": 0.01},
    "local": {"local": -0.02, "pooled": -0.15},
}


def canned_metrics(
    rounds: list[int] = EVAL_ROUNDS,
    *,
    algorithm: str = "tap",
    seed: int = 41,
    client_tasks: dict[int, list[str]] = CLIENT_TASKS,
) -> list[dict[str, Any]]:
    """FL rounds: global and personal models; after FL (stage post): the final model."""
    rows: list[dict[str, Any]] = []
    shift = ALGORITHM_SHIFT.get(algorithm, ALGORITHM_SHIFT["tap"])
    noise = 0.01 * (seed - 41)
    for client, tasks in client_tasks.items():
        for task, metric in ((t, m) for t in tasks for m in TASK_METRICS[t]):
            for model, split in itertools.product(("global", "personal"), ("local", "pooled")):
                extra = noise + (shift[split] if model == "personal" else 0.0)
                for r in rounds:
                    rows.append(_row(r, "fl", client, task, model, split, metric, extra))
            for split in ("local", "pooled"):
                extra = noise + shift[split]
                rows.append(_row(rounds[-1], "post", client, task, "final", split, metric, extra))
    return rows


def _row(
    r: int,
    stage: str,
    client: int,
    task: str,
    model: str,
    split: str,
    metric: str,
    extra: float = 0.0,
) -> dict[str, Any]:
    # Deterministic, roughly plausible numbers: the personal model is best on the client's
    # own data and worse on everyone's (personalization vs generalization).
    bonus = {
        ("global", "local"): 0.0,
        ("global", "pooled"): -0.02,
        ("personal", "local"): 0.06,
        ("personal", "pooled"): -0.05,
        ("final", "local"): 0.05,
        ("final", "pooled"): 0.01,
    }[(model, split)]
    base = 0.5 + 0.08 * min(r, 5) + 0.0005 * r + bonus + extra
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


def canned_losses(rounds: int = 4) -> list[dict[str, Any]]:
    return [
        {
            "round": r,
            "stage": "fl",
            "client": client,
            "model": model,
            "task": task,
            "loss": round(2.0 / (r + 1) + (0.1 if model == "global" else 0.0), 4),
            "steps": 15,
        }
        for client, tasks in CLIENT_TASKS.items()
        for task in tasks
        for model in ("global", "personal")
        for r in range(1, rounds + 1)
    ]


def canned_steps(
    steps: int = 4, round_: int = 4, client_tasks: dict[int, list[str]] = CLIENT_TASKS
) -> list[dict[str, Any]]:
    """A TAP run's stage 2 step by step: the teacher's (global_ft) and the student's (final)
    task losses, and the student's lambda x KD per task, three orders of magnitude smaller."""
    rows = []
    for client, tasks in client_tasks.items():
        for model in ("global_ft", "final"):
            terms = ["task", "kd"] if model == "final" else ["task"]
            for step, term, task in itertools.product(range(1, steps + 1), terms, tasks):
                loss = 2.0 / step + (0.2 if model == "final" else 0.0)
                rows.append(
                    {
                        "round": round_,
                        "stage": "post",
                        "client": client,
                        "model": model,
                        "step": step,
                        "micro_batches": 4,
                        "term": term,
                        "task": task,
                        "value": round(loss if term == "task" else 0.002 / step, 6),
                    }
                )
    return rows


def canned_replacements(client_tasks: dict[int, list[str]] = CLIENT_TASKS) -> list[dict[str, Any]]:
    """A TAP run's replacement events: some clients adopt the global model early on."""
    events = []
    for client, tasks in client_tasks.items():
        for index, task in enumerate(tasks):
            if (client + index) % 2 == 0:
                events.append(
                    {
                        "round": 2 + 2 * ((client + index) % 3),
                        "client": client,
                        "task": task,
                        "global_loss": 0.8,
                        "personal_loss": 0.9,
                        "margin": 0.01,
                        "parameters_copied": 12_345,
                    }
                )
    return events


def large_run_rows(
    clients: int = 30, rounds: int = 200
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(metrics, losses, replacements) of one finished TAP run with ``clients`` clients
    (every third holds two tasks) evaluated every round: the run page's load test."""
    client_tasks = {c: [CLASSIFY, GENERATE] if c % 3 == 1 else [CLASSIFY] for c in range(clients)}
    metrics = canned_metrics(list(range(1, rounds + 1)), client_tasks=client_tasks)
    losses = [
        {"round": r, "stage": "fl", "client": c, "model": model, "task": task,
         "loss": round(2.0 / r + (0.1 if model == "global" else 0.0), 4), "steps": 10}
        for c, tasks in client_tasks.items() for task in tasks
        for model in ("global", "personal") for r in range(1, rounds + 1)
    ]  # fmt: skip
    replacements = [
        {**event, "round": event["round"] + 10 * k}
        for event in canned_replacements(client_tasks)
        for k in range(rounds // 20)
    ]
    return metrics, losses, replacements
