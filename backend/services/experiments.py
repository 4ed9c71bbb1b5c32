"""Submitting experiments: preset + overrides + sweep -> validated run configs -> rows -> queue."""

from __future__ import annotations

import itertools
import logging
import math
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Select, delete, func, or_, select
from sqlalchemy.orm import Session, selectinload

from backend.models import ACTIVE_STATUSES, Experiment, Run, RunStatus, User, utcnow
from backend.queue import RunQueue
from backend.schemas import MAX_RUNS_PER_EXPERIMENT, ExperimentCreate, ExperimentFilter
from backend.services import runs as run_service
from backend.services.dispatch import send_runs
from backend.settings import Settings
from tap_engine.config import ConfigError, RunConfig, list_presets, resolve_config

log = logging.getLogger(__name__)

Loc = tuple[str | int, ...]


class SubmissionError(ValueError):
    """An experiment that cannot be run; ``errors`` are in FastAPI's 422 ``detail`` shape."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors


def sweep_combinations(sweep: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of the sweep's value lists, as one override dict each."""
    keys = list(sweep)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*sweep.values())]


def resolve_runs(body: ExperimentCreate) -> list[tuple[RunConfig, dict[str, Any]]]:
    """One validated config per sweep combination (with the combination), or a
    SubmissionError naming the fields."""
    if body.preset not in list_presets():
        # The engine also takes a YAML path, but the API must not read files of the server.
        known = ", ".join(list_presets())
        raise SubmissionError(
            [_error(("body", "preset"), f"unknown preset {body.preset!r} (known: {known})")]
        )
    # The size from the axes' lengths, before any combination is built: a short body can
    # describe billions of them.
    size = math.prod(len(values) for values in body.sweep.values())
    if size > MAX_RUNS_PER_EXPERIMENT:
        # "160 x 160 x 160 = 4096000" says where the size comes from; one axis needs no sum.
        lengths = [str(len(values)) for values in body.sweep.values() if len(values) != 1]
        axes = f"{' x '.join(lengths)} = " if len(lengths) > 1 else ""
        raise SubmissionError(
            [
                _error(
                    ("body", "sweep"),
                    f"the sweep gives {axes}{size} runs; at most "
                    f"{MAX_RUNS_PER_EXPERIMENT} fit in one experiment",
                )
            ]
        )
    combos = sweep_combinations(body.sweep)
    configs: list[tuple[RunConfig, dict[str, Any]]] = []
    errors: list[dict[str, Any]] = []
    for combo in combos:
        try:
            configs.append(
                (resolve_config(body.preset, body.algorithm, body.overrides | combo), combo)
            )
        except ConfigError as exc:
            errors.append(_error(_locate(exc.loc, body, combo), exc.msg))
        except ValidationError as exc:
            errors.extend(
                _error(_locate(e["loc"], body, combo, e["msg"]), e["msg"], e["type"], e["input"])
                for e in exc.errors(include_url=False)
            )
    if errors:
        raise SubmissionError(_unique(errors))
    return configs


def _locate(loc: Loc, body: ExperimentCreate, combo: dict[str, Any], msg: str = "") -> Loc:
    """Where in the request body the config field at ``loc`` was set.

    The most specific override or sweep key on the field's path wins (the sweep is
    applied last, so it wins ties); a field no key touches came from the preset.
    """
    if loc == ("preset",):
        return ("body", "preset")
    path = tuple(str(part) for part in loc)
    best: tuple[int, Loc] | None = None
    sources = [("overrides", body.overrides), ("sweep", combo)]
    if body.algorithm is not None:
        sources.insert(0, ("algorithm", {"algorithm": body.algorithm}))
    for source, keys in sources:
        for key in keys:
            parts = tuple(key.split("."))
            if path and not (path[: len(parts)] == parts or parts[: len(path)] == path):
                continue
            # A whole-config check (``path == ()``) is pinned on a key its message names.
            if not path and not re.search(rf"\b{re.escape(key)}\b", msg):
                continue
            where: Loc = {
                "algorithm": ("body", "algorithm"),
                "overrides": ("body", "overrides", *(loc or parts)),
                "sweep": ("body", "sweep", key),
            }[source]
            if best is None or len(parts) >= best[0]:
                best = (len(parts), where)
    if best is not None:
        return best[1]
    if not path:
        for source in ("overrides", "sweep"):
            if getattr(body, source):
                return ("body", source)
    return ("body", "preset", *loc)


def _error(loc: Loc, msg: str, kind: str = "value_error", value: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": kind, "loc": list(loc), "msg": msg}
    if value is not None and not isinstance(value, dict):
        error["input"] = value  # the offending value; whole config sections would be noise
    return error


def _unique(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Every combination of a sweep repeats the errors that do not depend on it.
    seen: set[tuple[str, str]] = set()
    out = []
    for error in errors:
        key = (repr(error["loc"]), error["msg"])
        if key not in seen:
            seen.add(key)
            out.append(error)
    return out


def preview_experiment(body: ExperimentCreate) -> dict[str, Any]:
    """What ``create_experiment`` would store, validated the same way; writes nothing."""
    configs = resolve_runs(body)
    return {
        "runs": len(configs),
        "combinations": [combo for _, combo in configs],
        "config": configs[0][0].model_dump(mode="json"),
    }


def create_experiment(session: Session, owner: User, body: ExperimentCreate) -> Experiment:
    """Validate, then store the experiment and its queued runs in one transaction.

    The runs of one experiment (its sweep) share a group id, which the workers hand to the
    engine so that they share one preprocessing cache.
    """
    configs = resolve_runs(body)
    now = utcnow()
    experiment = Experiment(
        name=body.name or body.preset,
        preset=body.preset,
        owner=owner,
        spec=body.model_dump(mode="json", exclude_unset=True),
        created_at=now,
    )
    group_id = uuid.uuid4().hex
    experiment.runs = [
        Run(
            algorithm=config.algorithm,
            seed=config.seed,
            config=config.model_dump(mode="json"),
            status=RunStatus.QUEUED,
            total_rounds=config.rounds,
            group_id=group_id,
            sweep=combo or None,
            time_limit_s=body.time_limit_s,
            created_at=now,
            queued_at=now,
        )
        for config, combo in configs
    ]
    session.add(experiment)
    session.flush()
    sweep = f" ({len(configs)} runs of one sweep)" if len(configs) > 1 else ""
    run_service.record_created(session, experiment.runs, f"submitted by {owner.name}{sweep}")
    session.commit()
    return experiment


def enqueue_runs(session: Session, queue: RunQueue, runs: list[Run], settings: Settings) -> None:
    """Hand each run to the workers. A run the queue cannot take now stays queued (with a
    log line saying so): the reconciler sends it once the queue answers again."""
    send_runs(session, queue, runs, settings, source="api")


def list_experiments(
    session: Session, limit: int, offset: int, f: ExperimentFilter | None = None
) -> tuple[list[Experiment], int]:
    """Experiments newest first, selected by ``f`` (owner, run status, algorithm, preset,
    text in the name or preset)."""
    query = select(Experiment)
    if f is not None:
        query = _filtered(query, f)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(
        query.options(selectinload(Experiment.runs))
        .order_by(Experiment.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return list(items), total


def _filtered(query: Select[tuple[Experiment]], f: ExperimentFilter) -> Select[tuple[Experiment]]:
    if f.owner is not None:
        query = query.where(Experiment.owner.has(User.name == f.owner))
    if f.preset is not None:
        query = query.where(Experiment.preset == f.preset)
    if f.status is not None:
        query = query.where(Experiment.runs.any(Run.status == f.status))
    if f.algorithm is not None:
        query = query.where(Experiment.runs.any(Run.algorithm == f.algorithm))
    if f.q:
        query = query.where(
            or_(
                Experiment.name.icontains(f.q, autoescape=True),
                Experiment.preset.icontains(f.q, autoescape=True),
            )
        )
    return query


def get_experiment(session: Session, experiment_id: int) -> Experiment | None:
    return session.get(Experiment, experiment_id, options=[selectinload(Experiment.runs)])


class ExperimentBusy(ValueError):
    """The experiment still has runs that a worker may write to (the API answers 409)."""


def delete_experiment(session: Session, experiment: Experiment, runs_dir: Path) -> None:
    """Delete the experiment, its runs and every row of them (metrics, losses, stage-2
    steps, replacements, logs, transitions: the foreign keys cascade), then the runs'
    directories.

    Runs still queued or running must be cancelled first: a worker would otherwise go on
    writing rows of a run that no longer exists."""
    active = [r.id for r in experiment.runs if r.status in ACTIVE_STATUSES]
    if active:
        raise ExperimentBusy(
            f"experiment {experiment.id} has active runs {active}; cancel them first"
        )
    workdirs = [Path(r.workdir) for r in experiment.runs if r.workdir]
    workdirs += [runs_dir / str(r.id) for r in experiment.runs]
    session.execute(delete(Experiment).where(Experiment.id == experiment.id))
    session.commit()
    for workdir in set(workdirs):
        shutil.rmtree(workdir, ignore_errors=True)
    log.info("deleted experiment %s with runs %s", experiment.id, [r.id for r in experiment.runs])
