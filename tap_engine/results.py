"""Final results of runs made with ``tapfl run``, side by side: what each run's delivered
model (``final``, after stage 2) scores per client and task, and for text generation the
constant answer's chance level. Read from the run folders' ``config.json`` and
``events.jsonl``; nothing is recomputed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tap_engine.config import RunConfig

# Per task family, the metrics a results table shows by default.
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "image_classification": ("accuracy", "loss"),
    "text_classification": ("accuracy", "loss"),
    "image_generation": ("mse",),
    "text_generation": ("chrf", "exact_match", "token_accuracy"),
}
CONSTANT = "constant"


@dataclass
class RunResults:
    label: str  # the run's algorithm
    families: dict[str, str]  # task -> family
    final: dict[tuple[int, str, str, str], float]  # (client, task, split, metric) -> value
    constant: dict[tuple[int, str, str, str], float]
    # per family: the delivered model's stage-2 task losses and lambda x KD, one per step
    stage2_losses: dict[str, list[float]] = field(default_factory=dict)
    stage2_kd: dict[str, list[float]] = field(default_factory=dict)


def read_run(folder: Path) -> RunResults:
    config = RunConfig.model_validate_json((folder / "config.json").read_text())
    families = {t.task: t.family for c in config.scenario.clients for t in c.tasks}
    results = RunResults(config.algorithm, families, {}, {})
    with (folder / "events.jsonl").open() as lines:
        for line in lines:
            event = json.loads(line)
            if event.get("type") == "training_step" and event["model"] == "final":
                for task, value in event["losses"].items():
                    results.stage2_losses.setdefault(families[task], []).append(value)
                for task, value in event["extra_losses"].get("kd", {}).items():
                    results.stage2_kd.setdefault(families[task], []).append(value)
            if event.get("type") != "evaluation" or event["stage"] != "post":
                continue
            key = (event["client"], event["task"], event["split"], event["metric"])
            if event["model"] == "final":
                results.final[key] = event["value"]
            elif event["model"] == CONSTANT:
                results.constant[key] = event["value"]
    return results


@dataclass
class Row:
    family: str
    client: int | None  # None: the mean over the family's client-task pairs
    task: str
    metric: str
    values: list[float | None]  # per run, then the constant answer


def table(runs: list[RunResults], split: str) -> list[Row]:
    """One row per client, task and default metric, then per family and metric the mean
    over its client-task pairs."""
    families = {t: f for r in runs for t, f in r.families.items()}
    pairs = sorted({(c, t) for r in runs for (c, t, s, _) in r.final if s == split})
    rows: list[Row] = []
    for client, task in pairs:
        family = families[task]
        for metric in DEFAULT_METRICS[family]:
            key = (client, task, split, metric)
            chance = next((r.constant[key] for r in runs if key in r.constant), None)
            values = [r.final.get(key) for r in runs] + [chance]
            rows.append(Row(family, client, task, metric, values))
    for family in DEFAULT_METRICS:
        for metric in DEFAULT_METRICS[family]:
            members = [r for r in rows if r.family == family and r.metric == metric]
            if members:
                rows.append(Row(family, None, "mean", metric, _column_means(members)))
    return rows


def _column_means(rows: list[Row]) -> list[float | None]:
    means: list[float | None] = []
    for column in zip(*(r.values for r in rows), strict=True):
        known = [v for v in column if v is not None]
        means.append(sum(known) / len(known) if len(known) == len(column) else None)
    return means


def markdown(runs: list[RunResults], rows: list[Row]) -> str:
    header = ["family", "client", "task", "metric", *(r.label for r in runs), CONSTANT]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 4 + "---:|" * (len(runs) + 1)]
    for row in rows:
        cells = [
            row.family,
            "all" if row.client is None else str(row.client),
            row.task,
            row.metric,
            *("" if v is None else f"{v:.4g}" for v in row.values),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def distillation_markdown(runs: list[RunResults]) -> str:
    """Per run and task family: the student's mean stage-2 task loss and lambda x KD per
    step, and their ratio (how much the distillation term weighs in the loss)."""
    lines = [
        "| run | family | task loss | λ·KD | λ·KD / task loss |",
        "|---|---|---:|---:|---:|",
    ]
    for run in runs:
        for family, kd in sorted(run.stage2_kd.items()):
            losses = run.stage2_losses[family]
            loss, term = sum(losses) / len(losses), sum(kd) / len(kd)
            ratio = f"{term / loss:.3g}" if loss else ""
            lines.append(f"| {run.label} | {family} | {loss:.4g} | {term:.4g} | {ratio} |")
    return "\n".join(lines)
