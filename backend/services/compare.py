"""Comparing runs: runs grouped by their resolved config without the seed, and per group the
mean ± std over its runs of one metric, per client, task and round (curves) and at each
run's last evaluated round (final values).

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

from backend.models import Metric, Run
from backend.schemas import CompareCurve, CompareFinal, CompareGroup, CompareOut
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
            groups[key] = _Group(key, run.algorithm, flatten(run.config), [])
        groups[key].runs.append(run)
    return list(groups.values())


def labels(groups: list[_Group]) -> list[str]:
    """The algorithm, then each other field whose value differs between the groups."""
    keys = sorted({k for g in groups for k in g.config} - IGNORED_FIELDS - {"algorithm"})
    differing = [k for k in keys if len({json.dumps(g.config.get(k)) for g in groups}) > 1]
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
    groups = group_runs(runs)
    index = {run.id: i for i, g in enumerate(groups) for run in g.runs}
    curves = _curves(session, index, metric, split, model)
    finals = _finals(session, index, metric, split, model)
    out = []
    for i, (group, label) in enumerate(zip(groups, labels(groups), strict=True)):
        out.append(
            CompareGroup(
                key=group.key,
                algorithm=group.algorithm,
                label=label,
                run_ids=[r.id for r in group.runs],
                seeds=[r.seed for r in group.runs],
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
        curve.mean.append(float(mean))
        curve.std.append(_sqrt(var))
        curve.n.append(n)
    out: dict[int, list[CompareCurve]] = defaultdict(list)
    for (g, _, _), curve in series.items():
        out[g].append(curve)
    return out


def _finals(
    session: Session, index: dict[int, int], metric: str, split: str, model: str
) -> dict[int, list[CompareFinal]]:
    """Each run's value at its last evaluated round (post-FL after FL), then mean ± std per
    group, client and task."""
    group, where = _selection(index, metric, split, model)
    order = func.row_number().over(
        partition_by=(Metric.run_id, Metric.client, Metric.task),
        order_by=(Metric.stage.desc(), Metric.round.desc()),
    )
    ranked = (
        select(group, Metric.client, Metric.task, Metric.value, order.label("k"))
        .where(*where)
        .subquery()
    )
    last = (
        select(ranked.c.g, ranked.c.client, ranked.c.task, ranked.c.value)
        .where(ranked.c.k == 1)
        .cte("last")
    )
    query = _mean_and_variance(last, ("g", "client", "task"), "final_means")
    out: dict[int, list[CompareFinal]] = defaultdict(list)
    for g, client, task, mean, n, var in session.execute(query):
        out[g].append(CompareFinal(client=client, task=task, mean=float(mean), std=_sqrt(var), n=n))
    return out


def _mean_and_variance(rows: Any, columns: tuple[str, ...], name: str) -> Any:
    """Per group of ``columns``: the columns, mean, count and population variance of
    ``rows.c.value``, ordered by the columns (two passes, so it is exact on both databases)."""
    keys = tuple(rows.c[c] for c in columns)
    means = (
        select(*keys, func.avg(rows.c.value).label("mean"), func.count().label("n"))
        .group_by(*keys)
        .cte(name)
    )
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


def _sqrt(var: float | None) -> float:
    # Rounding can leave a variance a hair below zero.
    return math.sqrt(max(0.0, float(var or 0.0)))
