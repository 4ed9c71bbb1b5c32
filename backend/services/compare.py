"""Comparing runs: runs grouped by their resolved config without the seed, and per group the
mean ± std over its runs of one metric, per client, task and round (curves) and at each
run's last evaluated round (final values, with each run's own value so that runs can be
paired by seed). Only succeeded runs are compared; the others are reported as excluded,
as are the config keys in which the groups differ besides the algorithm.

The aggregation runs in SQL, one query for the curves and one for the final values over all
groups at once: a ``CASE`` maps each run to its group, and the variance is a second pass
over the group means (population variance, 0 for one run; its square root is taken here
because SQLite has no ``sqrt``).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Label, and_, case, func, literal, select
from sqlalchemy.orm import Session

from backend.models import Metric, Run, RunStatus
from backend.schemas import (
    CompareCurve,
    CompareDiffering,
    CompareExcluded,
    CompareFinal,
    CompareGroup,
    CompareOut,
    CompareRunValue,
)
from tap_engine.catalog import higher_is_better

# Fields that do not make two runs different experiments.
IGNORED_FIELDS = frozenset({"seed", "name", "device"})


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def group_key(config: dict[str, Any]) -> str:
    kept = {k: v for k, v in flatten(config).items() if k not in IGNORED_FIELDS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class _Group:
    key: str
    algorithm: str
    config: dict[str, Any]
    runs: list[Run]


def group_runs(runs: list[Run]) -> list[_Group]:
    """Runs with the same config but the seed, in the order of their first run's id."""
    groups: dict[str, _Group] = {}
    for run in sorted(runs, key=lambda r: r.id):
        key = group_key(run.config)
        if key not in groups:
            kept = {k: v for k, v in flatten(run.config).items() if k not in IGNORED_FIELDS}
            groups[key] = _Group(key, run.algorithm, kept, [])
        groups[key].runs.append(run)
    return list(groups.values())


def differing_keys(groups: list[_Group]) -> list[str]:
    """The config keys, besides the algorithm, whose values differ between the groups."""
    keys = sorted({k for g in groups for k in g.config} - IGNORED_FIELDS - {"algorithm"})
    return [k for k in keys if len({json.dumps(g.config.get(k)) for g in groups}) > 1]


def labels(groups: list[_Group]) -> list[str]:
    """The algorithm, then each other field whose value differs between the groups."""
    differing = differing_keys(groups)
    out = []
    for g in groups:
        parts = [g.algorithm, *(f"{k}={_short(g.config.get(k))}" for k in differing)]
        out.append(", ".join(parts))
    return out


def _short(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def runs_by_id(session: Session, ids: list[int]) -> list[Run]:
    return list(session.scalars(select(Run).where(Run.id.in_(ids))))


def compare(session: Session, runs: list[Run], metric: str, split: str, model: str) -> CompareOut:
    """The succeeded ``runs`` compared; unfinished, failed and cancelled ones are excluded
    (a half-trained run's last value is not a final value)."""
    done = [run for run in runs if run.status == RunStatus.SUCCEEDED]
    excluded = [
        CompareExcluded(run_id=run.id, status=str(run.status))
        for run in sorted(runs, key=lambda r: r.id)
        if run.status != RunStatus.SUCCEEDED
    ]
    groups = group_runs(done)
    index = {run.id: i for i, g in enumerate(groups) for run in g.runs}
    curves = _curves(session, index, metric, split, model)
    seeds = {run.id: run.seed for run in done}
    finals = _finals(session, index, metric, split, model, seeds)
    out = []
    for i, (group, label) in enumerate(zip(groups, labels(groups), strict=True)):
        out.append(
            CompareGroup(
                key=group.key,
                algorithm=group.algorithm,
                label=label,
                run_ids=[r.id for r in group.runs],
                seeds=[r.seed for r in group.runs],
                config=group.config,
                curves=curves.get(i, []),
                final=finals.get(i, []),
            )
        )
    return CompareOut(
        metric=metric,
        split=split,
        model=model,
        higher_is_better=higher_is_better(metric),
        groups=out,
        excluded=excluded,
        differing=[
            CompareDiffering(key=key, values=[g.config.get(key) for g in groups])
            for key in differing_keys(groups)
        ],
    )


def _selection(
    index: dict[int, int], metric: str, split: str, model: str
) -> tuple[Label[int], tuple[ColumnElement[bool], ...]]:
    group = case(index, value=Metric.run_id) if index else literal(0)
    return group.label("g"), (
        Metric.run_id.in_(list(index)),
        Metric.metric == metric,
        Metric.split == split,
        Metric.model == model,
    )


def _curves(
    session: Session, index: dict[int, int], metric: str, split: str, model: str
) -> dict[int, list[CompareCurve]]:
    """Mean, std and count over each group's runs per client, task and round. The rounds of
    FL training, or the post-FL evaluation for models that only it has (``final``)."""
    group, where = _selection(index, metric, split, model)
    stages = set(session.scalars(select(Metric.stage).where(*where).distinct()))
    stage = "fl" if "fl" in stages else "post"
    rows = (
        select(group, Metric.client, Metric.task, Metric.round, Metric.value)
        .where(*where, Metric.stage == stage)
        .cte("selected")
    )
    query = _mean_and_variance(rows, ("g", "client", "task", "round"), "means")
    series: dict[tuple[int, int, str], CompareCurve] = {}
    for g, client, task, rnd, mean, n, var in session.execute(query):
        curve = series.setdefault(
            (g, client, task),
            CompareCurve(client=client, task=task, rounds=[], mean=[], std=[], n=[]),
        )
        curve.rounds.append(rnd)
        curve.mean.append(_float(mean))
        curve.std.append(_sqrt(var))
        curve.n.append(n)
    out: dict[int, list[CompareCurve]] = defaultdict(list)
    for (g, _, _), curve in series.items():
        out[g].append(curve)
    return out


def _finals(
    session: Session,
    index: dict[int, int],
    metric: str,
    split: str,
    model: str,
    seeds: dict[int, int],
) -> dict[int, list[CompareFinal]]:
    """Each run's value at its last evaluated round (post-FL after FL), then mean ± std per
    group, client and task, with the runs' own values."""
    group, where = _selection(index, metric, split, model)
    order = func.row_number().over(
        partition_by=(Metric.run_id, Metric.client, Metric.task),
        order_by=(Metric.stage.desc(), Metric.round.desc()),
    )
    ranked = (
        select(
            group,
            Metric.run_id,
            Metric.client,
            Metric.task,
            Metric.round,
            Metric.value,
            order.label("k"),
        )
        .where(*where)
        .subquery()
    )
    last = select(*ranked.c).where(ranked.c.k == 1).cte("last")
    per_run: dict[tuple[int, int, str], list[CompareRunValue]] = defaultdict(list)
    for g, run_id, client, task, rnd, value, _ in session.execute(
        select(last).order_by(last.c.run_id)
    ):
        value_of_run = CompareRunValue(run_id=run_id, seed=seeds[run_id], value=value, round=rnd)
        per_run[(g, client, task)].append(value_of_run)
    query = _mean_and_variance(last, ("g", "client", "task"), "final_means")
    out: dict[int, list[CompareFinal]] = defaultdict(list)
    for g, client, task, mean, n, var in session.execute(query):
        final = CompareFinal(
            client=client,
            task=task,
            mean=_float(mean),
            std=_sqrt(var),
            n=n,
            values=per_run[(g, client, task)],
        )
        out[g].append(final)
    return out


def _mean_and_variance(rows: Any, columns: tuple[str, ...], name: str) -> Any:
    """Per group of ``columns``: the columns, mean, count and population variance of
    ``rows.c.value``, ordered by the columns (two passes, so it is exact on both databases).

    A group holding a NULL (a run's value was not finite) has a NULL mean and variance: a
    diverged seed must not vanish from the mean that ``n`` says it is part of."""
    keys = tuple(rows.c[c] for c in columns)
    all_finite = func.count(rows.c.value) == func.count()
    mean = case((all_finite, func.avg(rows.c.value)), else_=None)
    means = select(*keys, mean.label("mean"), func.count().label("n")).group_by(*keys).cte(name)
    deviation = rows.c.value - means.c.mean
    grouped = (*(means.c[c] for c in columns), means.c.mean, means.c.n)
    return (
        select(*grouped, func.avg(deviation * deviation).label("var"))
        .join(means, _same(rows, means, columns))
        .group_by(*grouped)
        .order_by(*(means.c[c] for c in columns))
    )


def _same(a: Any, b: Any, columns: tuple[str, ...]) -> ColumnElement[bool]:
    return and_(*(a.c[c] == b.c[c] for c in columns))


def _float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _sqrt(var: float | None) -> float | None:
    # None: not finite (see _mean_and_variance). Rounding can leave a variance a hair below 0.
    return None if var is None else math.sqrt(max(0.0, float(var)))
