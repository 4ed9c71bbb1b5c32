"""A fake tapfl REST API (v1) on loopback, shaped like the contract, for dashboard tests.

It holds a few runs with canned per-client metrics (a small version of the demo preset:
one client with two tasks, classification tasks with accuracy and loss, a generation task
with mse and loss), applies the same query filters as the real API, and records every
request so tests can check that filtering happens on the server. Validation errors come
from pydantic, so their 422 ``detail`` has FastAPI's real shape.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

TOKEN = "fake-token"
CLASSIFY = "digits_image_classification"
GENERATE = "digits_image_generation"
# client -> tasks, like a smaller demo preset: client 1 holds two tasks.
CLIENT_TASKS: dict[int, list[str]] = {0: [CLASSIFY], 1: [CLASSIFY, GENERATE], 2: [GENERATE]}
TASK_METRICS = {CLASSIFY: ["accuracy", "loss"], GENERATE: ["mse", "loss"]}
EVAL_ROUNDS = [0, 2, 4]
PANELS = [(client, task) for client, tasks in CLIENT_TASKS.items() for task in tasks]


def _now(minutes_ago: float = 0) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()


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


def canned_logs(run_id: int) -> list[dict[str, Any]]:
    lines = [
        ("INFO", "api", "queued"),
        ("INFO", "worker", "taken by worker w1 (attempt 1)"),
        ("INFO", "engine", "round 1 started"),
        ("WARNING", "engine", "client 2: few test samples for digits_image_generation"),
        ("INFO", "engine", "run finished"),
    ]
    return [
        {"seq": 100 * run_id + i, "time": _now(25 - i), "level": level, "source": src,
         "message": message}
        for i, (level, src, message) in enumerate(lines, start=1)
    ]  # fmt: skip


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


def make_run(run_id: int, experiment: dict[str, Any], **fields: Any) -> dict[str, Any]:
    run = {
        "id": run_id,
        "experiment_id": experiment["id"],
        "experiment_name": experiment["name"],
        "preset": experiment["preset"],
        "algorithm": "tap",
        "seed": 41,
        "status": "succeeded",
        "stage": "post",
        "round": 4,
        "total_rounds": 4,
        "progress": 1.0,
        "eta_s": None,
        "error": None,
        "created_at": _now(30),
        "started_at": _now(29),
        "finished_at": _now(20),
    }
    run.update(fields)
    run.setdefault("group_id", experiment.get("group_id") or f"group-{experiment['id']}")
    run.setdefault(
        "config",
        {
            "preset": run["preset"],
            "algorithm": run["algorithm"],
            "seed": run["seed"],
            "rounds": run["total_rounds"],
            "eval_every": 2,
        },
    )
    return run


@dataclass
class FakeState:
    token: str = TOKEN
    presets: list[dict[str, str]] = field(
        default_factory=lambda: [
            {
                "name": "demo",
                "description": "Six clients on scikit-learn digits, CPU.",
                "algorithm": "fedavg",
                "rounds": 8,
                "clients": 6,
                "backbone": "conv-tiny",
            },
            {"name": "paper-vilt", "description": "The paper's ViLT setup."},
        ]
    )
    experiments: list[dict[str, Any]] = field(default_factory=list)
    runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    losses: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    # Stage 2 step by step; empty unless a test gives a run some (canned_steps).
    steps: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    replacements: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    logs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    # Endpoints this fake API leaves out, like a server from before they existed.
    missing: set[str] = field(default_factory=set)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    health: dict[str, Any] = field(
        default_factory=lambda: {"status": "ok", "database": True, "redis": True}
    )
    algorithms: set[str] = field(default_factory=lambda: {"tap", "fedavg", "local"})
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_experiment(self, name: str, preset: str = "demo") -> dict[str, Any]:
        experiment = {
            "id": len(self.experiments) + 1,
            "name": name,
            "preset": preset,
            "owner": "tester",
            "created_at": _now(31),
            "runs": [],
        }
        self.experiments.append(experiment)
        return experiment

    def add_run(self, experiment: dict[str, Any], *, with_data: bool = True, **fields: Any):
        run_id = max(self.runs, default=0) + 1
        run = make_run(run_id, experiment, **fields)
        self.runs[run_id] = run
        experiment["runs"].append(run)
        algorithm, seed = run["algorithm"], run["seed"]
        self.metrics[run_id] = canned_metrics(algorithm=algorithm, seed=seed) if with_data else []
        self.losses[run_id] = canned_losses() if with_data else []
        tap = with_data and algorithm == "tap"
        self.replacements[run_id] = canned_replacements() if tap else []
        self.logs[run_id] = canned_logs(run_id)
        return run

    def queries(self, path_end: str) -> list[dict[str, str]]:
        """The query parameters of every recorded request whose path ends so."""
        return [query for _, path, query in self.requests if path.endswith(path_end)]


def seeded_state() -> FakeState:
    """Four runs, one per interesting status; run 1 has the full set of curves."""
    state = FakeState()
    demo = state.add_experiment("demo-sweep")
    state.add_run(demo)  # 1: succeeded, with metrics and losses
    state.add_run(
        demo,
        seed=42,
        status="running",
        stage="fl",
        round=2,
        progress=0.5,
        eta_s=95.0,
        finished_at=None,
    )
    broken = state.add_experiment("broken", preset="paper-vilt")
    state.add_run(
        broken,
        with_data=False,
        status="failed",
        stage="fl",
        round=1,
        progress=0.25,
        error="RuntimeError: CUDA out of memory",
    )
    state.add_run(
        broken,
        with_data=False,
        seed=43,
        status="queued",
        stage=None,
        round=None,
        progress=0.0,
        started_at=None,
        finished_at=None,
    )
    # Newest first, like the real API; creation times follow the ids.
    for run_id, run in state.runs.items():
        run["created_at"] = _now(30 - run_id)
    return state


def sweep_state() -> FakeState:
    """One sweep (TAP, FedAvg and local, three seeds each), all succeeded, and one more run."""
    state = FakeState()
    sweep = state.add_experiment("ablation")
    sweep["group_id"] = "sweep-ablation"
    for algorithm in ("tap", "fedavg", "local"):
        for seed in (41, 42, 43):
            state.add_run(sweep, algorithm=algorithm, seed=seed)
    other = state.add_experiment("single")
    state.add_run(other, algorithm="tap", seed=7)
    return state


def large_run_state(clients: int = 30, rounds: int = 200, eval_every: int = 1) -> FakeState:
    """One finished TAP run with ``clients`` clients (every third holds two tasks) and an
    evaluation every ``eval_every`` of ``rounds`` rounds: the dashboard's load test."""
    client_tasks = {c: [CLASSIFY, GENERATE] if c % 3 == 1 else [CLASSIFY] for c in range(clients)}
    state = FakeState()
    experiment = state.add_experiment("large")
    run = state.add_run(experiment, with_data=False, round=rounds, total_rounds=rounds)
    run["config"]["eval_every"] = eval_every
    eval_rounds = list(range(eval_every, rounds + 1, eval_every))
    state.metrics[run["id"]] = canned_metrics(eval_rounds, client_tasks=client_tasks)
    state.losses[run["id"]] = [
        {"round": r, "stage": "fl", "client": c, "model": model, "task": task,
         "loss": round(2.0 / r + (0.1 if model == "global" else 0.0), 4), "steps": 10}
        for c, tasks in client_tasks.items() for task in tasks
        for model in ("global", "personal") for r in range(1, rounds + 1)
    ]  # fmt: skip
    state.replacements[run["id"]] = [
        {**event, "round": event["round"] + 10 * k}
        for event in canned_replacements(client_tasks)
        for k in range(rounds // 20)
    ]
    return state


def comparison(
    state: FakeState, runs: list[dict[str, Any]], metric: str, split: str, model: str
) -> dict[str, Any]:
    """The compare contract: runs grouped by config minus seed, mean ± std over seeds."""
    by_key: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        config = {k: v for k, v in run["config"].items() if k != "seed"}
        by_key.setdefault(json.dumps(config, sort_keys=True), []).append(run)
    groups = []
    for key, members in by_key.items():
        series: dict[tuple[int, str], dict[int, list[float]]] = {}
        finals: dict[tuple[int, str], list[float]] = {}
        for run in members:
            last: dict[tuple[int, str], tuple[int, float]] = {}
            for row in state.metrics.get(run["id"], []):
                if (row["metric"], row["split"], row["model"]) != (metric, split, model):
                    continue
                panel = (row["client"], row["task"])
                series.setdefault(panel, {}).setdefault(row["round"], []).append(row["value"])
                if panel not in last or row["round"] >= last[panel][0]:
                    last[panel] = (row["round"], row["value"])
            for panel, (_, value) in last.items():
                finals.setdefault(panel, []).append(value)
        algorithm = members[0]["algorithm"]
        groups.append(
            {
                "key": key,
                "algorithm": algorithm,
                "label": algorithm,
                "run_ids": [run["id"] for run in members],
                "seeds": [run["seed"] for run in members],
                "curves": [
                    {
                        "client": client,
                        "task": task,
                        "rounds": sorted(by_round),
                        "mean": [statistics.fmean(by_round[r]) for r in sorted(by_round)],
                        "std": [_std(by_round[r]) for r in sorted(by_round)],
                        "n": [len(by_round[r]) for r in sorted(by_round)],
                    }
                    for (client, task), by_round in sorted(series.items())
                ],
                "final": [
                    {
                        "client": client,
                        "task": task,
                        "mean": statistics.fmean(values),
                        "std": _std(values),
                        "n": len(values),
                    }
                    for (client, task), values in sorted(finals.items())
                ],
            }
        )
    return {
        "metric": metric,
        "split": split,
        "model": model,
        "higher_is_better": metric not in ("mse", "loss"),
        "groups": groups,
    }


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


# -- the app -----------------------------------------------------------------------------------


class Overrides(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rounds: int | None = Field(default=None, ge=1, le=1000)
    seed: int | None = None
    clients_per_round: int | None = Field(default=None, ge=1, le=6)
    local_steps: int | None = Field(default=None, ge=1)
    post_iterations: int | None = Field(default=None, ge=0)
    kd_lambda: float | None = Field(default=None, ge=0)
    eval_every: int | None = Field(default=None, ge=1)
    margins: dict[str, float] | None = None


class ExperimentIn(BaseModel):
    name: str | None = None
    preset: str
    algorithm: str | None = None
    overrides: Overrides | None = None
    sweep: dict[str, list[Any]] | None = None


def invalid(where: str, message: str) -> JSONResponse:
    """A 422 shaped like FastAPI's own, for checks pydantic cannot do alone."""
    detail = [{"loc": ["body", *where.split(".")], "msg": message, "type": "value_error"}]
    return JSONResponse(status_code=422, content={"detail": detail})


def create_app(state: FakeState) -> FastAPI:
    app = FastAPI()

    @app.middleware("http")
    async def record(request: Request, call_next):  # type: ignore[no-untyped-def]
        with state.lock:
            state.requests.append((request.method, request.url.path, dict(request.query_params)))
        return await call_next(request)

    def authorized(authorization: str | None = Header(default=None)) -> None:
        if authorization != f"Bearer {state.token}":
            raise HTTPException(401, "Invalid or missing token")

    auth = [Depends(authorized)]

    @app.get("/api/v1/health")
    def health() -> Any:
        # Like the real API: a degraded service answers 503 with the same body.
        code = 200 if state.health.get("status") == "ok" else 503
        return JSONResponse(status_code=code, content=state.health)

    @app.get("/api/v1/presets", dependencies=auth)
    def presets() -> dict[str, Any]:
        return {"items": state.presets}

    @app.get("/api/v1/experiments", dependencies=auth)
    def experiments(limit: int = 50, offset: int = 0) -> dict[str, Any]:
        items = state.experiments[::-1]
        return {"items": items[offset : offset + limit], "total": len(items)}

    @app.post("/api/v1/experiments", dependencies=auth, status_code=201)
    def create(body: ExperimentIn) -> Any:
        if body.preset not in {p["name"] for p in state.presets}:
            return invalid("preset", f"Unknown preset {body.preset!r}")
        if body.preset == "paper-vilt":  # like the real API: a preset's own config is checked
            return invalid("preset.backbone.name", "no local copy of dandelin/vilt-b32-mlm")
        if body.algorithm is not None and body.algorithm not in state.algorithms:
            known = ", ".join(sorted(state.algorithms))
            return invalid("algorithm", f"Unknown algorithm {body.algorithm!r}; known: {known}")
        overrides = body.overrides.model_dump(exclude_none=True) if body.overrides else {}
        sweep = body.sweep or {}
        for algorithm in sweep.get("algorithm", []):
            if algorithm not in state.algorithms:
                return invalid("sweep.algorithm", f"Unknown algorithm {algorithm!r}")
        experiment = state.add_experiment(body.name or body.preset, body.preset)
        experiment["created_at"] = _now()
        seeds = sweep.get("seed") or [overrides.get("seed", 41)]
        algorithms = sweep.get("algorithm") or [body.algorithm or "fedavg"]
        rounds = overrides.get("rounds", 4)
        for algorithm, seed in itertools.product(algorithms, seeds):
            # Runs finish at once: the fake has no worker, and the data is canned.
            run = state.add_run(
                experiment,
                algorithm=algorithm,
                seed=seed,
                created_at=_now(),
                total_rounds=rounds,
                round=rounds,
            )
            run["config"].update(overrides, seed=seed)
        return experiment

    @app.get("/api/v1/runs", dependencies=auth)
    def runs(
        experiment_id: int | None = None,
        group_id: str | None = None,
        status: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        items = sorted(state.runs.values(), key=lambda r: r["id"], reverse=True)
        if group_id is not None:
            items = [r for r in items if r["group_id"] == group_id]
        if experiment_id is not None:
            items = [r for r in items if r["experiment_id"] == experiment_id]
        if status:
            items = [r for r in items if r["status"] == status]
        return {"items": items[offset : offset + limit], "total": len(items)}

    def find(run_id: int) -> dict[str, Any]:
        if run_id not in state.runs:
            raise HTTPException(404, f"Run {run_id} not found")
        return state.runs[run_id]

    @app.get("/api/v1/runs/{run_id}", dependencies=auth)
    def run(run_id: int) -> dict[str, Any]:
        return find(run_id)

    @app.post("/api/v1/runs/{run_id}/cancel", dependencies=auth)
    def cancel(run_id: int) -> dict[str, Any]:
        found = find(run_id)
        if found["status"] not in ("queued", "running"):
            raise HTTPException(409, f"run {run_id} is {found['status']}: nothing to cancel")
        found["status"] = "cancelling" if found["status"] == "running" else "cancelled"
        return found

    @app.post("/api/v1/runs/{run_id}/retry", dependencies=auth)
    def retry(run_id: int) -> dict[str, Any]:
        found = find(run_id)
        if found["status"] not in ("failed", "cancelled"):
            raise HTTPException(409, f"run {run_id} is {found['status']}: only failed or "
                                "cancelled runs can be retried")  # fmt: skip
        found.update(status="queued", error=None, finished_at=None)
        return found

    @app.get("/api/v1/runs/{run_id}/logs", dependencies=auth)
    def logs(run_id: int, after: int = 0, limit: int = 1000, level: str | None = None):  # type: ignore[no-untyped-def]
        find(run_id)
        order = ["DEBUG", "INFO", "WARNING", "ERROR"]
        rows = [row for row in state.logs.get(run_id, []) if row["seq"] > after]
        if level:
            rows = [row for row in rows if order.index(row["level"]) >= order.index(level)]
        return {"items": rows[:limit], "total": len(rows)}

    @app.get("/api/v1/runs/{run_id}/logs.txt", dependencies=auth)
    def logs_text(run_id: int) -> Response:
        find(run_id)
        text = "".join(
            f"{row['time']} {row['level']:<7} [{row['source']}] {row['message']}\n"
            for row in state.logs.get(run_id, [])
        )
        return Response(text, media_type="text/plain")

    if "replacements" not in state.missing:

        @app.get("/api/v1/runs/{run_id}/replacements", dependencies=auth)
        def replacements(run_id: int) -> dict[str, Any]:
            find(run_id)
            rows = state.replacements.get(run_id, [])
            return {"items": rows, "total": len(rows)}

    if "compare" not in state.missing:

        @app.get("/api/v1/compare", dependencies=auth)
        def compare(  # type: ignore[no-untyped-def]
            metric: str,
            runs: str | None = None,
            group: str | None = None,
            split: str = "local",
            model: str = "personal",
        ):
            if runs:
                chosen = [find(int(part)) for part in runs.split(",") if part.strip()]
            elif group:
                chosen = [r for r in state.runs.values() if r["group_id"] == group]
                if not chosen:
                    raise HTTPException(404, f"Group {group} not found")
            else:
                raise HTTPException(422, "give runs or group")
            return comparison(state, chosen, metric, split, model)

    def filtered(run_id: int, request: Request) -> list[dict[str, Any]]:
        find(run_id)
        rows = state.metrics.get(run_id, [])
        query = request.query_params
        for key in ("task", "model", "split", "metric", "stage"):
            if key in query:
                rows = [row for row in rows if row[key] == query[key]]
        if "client" in query:
            rows = [row for row in rows if row["client"] == int(query["client"])]
        if "round_min" in query:
            rows = [row for row in rows if row["round"] >= int(query["round_min"])]
        if "round_max" in query:
            rows = [row for row in rows if row["round"] <= int(query["round_max"])]
        return rows

    @app.get("/api/v1/runs/{run_id}/metrics", dependencies=auth)
    def metrics(run_id: int, request: Request, limit: int = 10_000, offset: int = 0):  # type: ignore[no-untyped-def]
        rows = filtered(run_id, request)
        return {"items": rows[offset : offset + limit], "total": len(rows)}

    @app.get("/api/v1/runs/{run_id}/metrics.csv", dependencies=auth)
    def metrics_csv(run_id: int, request: Request) -> Response:
        out = io.StringIO()
        writer = csv.DictWriter(
            out, ["round", "stage", "client", "task", "model", "split", "metric", "value"]
        )
        writer.writeheader()
        writer.writerows(filtered(run_id, request))
        return Response(out.getvalue(), media_type="text/csv")

    @app.get("/api/v1/runs/{run_id}/losses", dependencies=auth)
    def losses(run_id: int, request: Request, limit: int = 10_000, offset: int = 0):  # type: ignore[no-untyped-def]
        find(run_id)
        rows = state.losses.get(run_id, [])
        query = request.query_params
        for key in ("task", "model", "stage"):
            if key in query:
                rows = [row for row in rows if row[key] == query[key]]
        if "client" in query:
            rows = [row for row in rows if row["client"] == int(query["client"])]
        return {"items": rows[offset : offset + limit], "total": len(rows)}

    if "steps" not in state.missing:

        @app.get("/api/v1/runs/{run_id}/steps", dependencies=auth)
        def steps(run_id: int, request: Request, limit: int = 10_000, offset: int = 0):  # type: ignore[no-untyped-def]
            find(run_id)
            rows = state.steps.get(run_id, [])
            query = request.query_params
            for key in ("model", "stage", "term", "task"):
                if key in query:
                    rows = [row for row in rows if row[key] == query[key]]
            if "client" in query:
                rows = [row for row in rows if row["client"] == int(query["client"])]
            return {"items": rows[offset : offset + limit], "total": len(rows)}

    return app


class FakeApi:
    """The fake served by uvicorn in a thread; ``state`` can be swapped between tests."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.token = TOKEN
        self.holder: dict[str, FakeState] = {"state": seeded_state()}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> FakeState:
        return self.holder["state"]

    def reset(self, state: FakeState | None = None) -> FakeState:
        self.holder["state"] = state or seeded_state()
        return self.state

    def start(self) -> None:
        # One app per state, built on first use, so a test can swap in a fresh state.
        apps: dict[int, FastAPI] = {}

        async def dispatch(scope, receive, send):  # type: ignore[no-untyped-def]
            state = self.state
            if id(state) not in apps:
                apps.clear()
                apps[id(state)] = create_app(state)
            await apps[id(state)](scope, receive, send)

        config = uvicorn.Config(
            dispatch,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake API did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


@contextmanager
def serve(port: int) -> Iterator[FakeApi]:
    api = FakeApi(port)
    api.start()
    try:
        yield api
    finally:
        api.stop()
