"""Request and response bodies of the REST API (v1)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from backend.settings import MAX_RUN_TIME_LIMIT_S, MIN_RUN_TIME_LIMIT_S

T = TypeVar("T")
MAX_RUNS_PER_EXPERIMENT = 256
"""Runs of one submission: the product of the sweep's value-list lengths."""
SQL_INT_MAX = 2**31 - 1
"""Ids, clients and rounds are SQL INTEGERs: a larger number is a 422, not a database error."""
SqlInt = Annotated[int, Field(ge=-SQL_INT_MAX - 1, le=SQL_INT_MAX)]
# A loss or metric the engine computed may be NaN or infinite (a diverged run); JSON has no
# such numbers, so it is sent as null.
Measured = Annotated[float | None, Field(description="null when not a finite number")]
RunStatusName = Literal["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int = Field(description="matching rows in all, regardless of limit and offset")


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: bool
    redis: bool


class PresetOut(BaseModel):
    name: str
    description: str
    algorithm: str
    rounds: int
    clients: int
    backbone: str
    pairs: list[str] = Field(
        default_factory=list,
        description="the modality-task pairs (MODALITIES:FAMILY) in the order the setting "
        "`pairs` keeps them",
    )


class PresetList(BaseModel):
    items: list[PresetOut]


class ExperimentCreate(BaseModel):
    """A preset, optionally changed field by field, run once or over a sweep."""

    # strict: JSON types as declared (no "5" for a number, no 0 for a boolean).
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "name": "demo: fedavg vs local",
                    "preset": "demo",
                    "algorithm": "fedavg",
                    "overrides": {"rounds": 4, "backbone.tiny_hidden_size": 32},
                    "sweep": {"seed": [41, 42], "algorithm": ["fedavg", "local"]},
                }
            ]
        },
    )

    name: str | None = Field(default=None, min_length=1, max_length=200)
    preset: str = Field(min_length=1, max_length=200, description="a preset name (GET /presets)")
    algorithm: str | None = Field(
        default=None, max_length=50, description="replaces the preset's algorithm"
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="config fields to change: dotted keys (`backbone.name`) or nested objects",
    )
    sweep: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(
        default_factory=dict,
        description="dotted key -> values; one run per combination (cartesian product), "
        f"at most {MAX_RUNS_PER_EXPERIMENT} runs in all",
    )
    time_limit_s: float | None = Field(
        default=None,
        ge=MIN_RUN_TIME_LIMIT_S,
        le=MAX_RUN_TIME_LIMIT_S,
        description="time limit of each attempt of each run, in seconds (default: the "
        "server's TAPFL_RUN_TIME_LIMIT_S); a run that reaches it fails, keeping its "
        "checkpoint, and is not queued again",
    )


class ExperimentPreview(BaseModel):
    """What ``POST /experiments`` would queue for the same body, without queueing it."""

    runs: int = Field(description="how many runs the submission would queue")
    combinations: list[dict[str, Any]] = Field(
        description="the sweep values of each run, in order ({} when there is no sweep)"
    )
    config: dict[str, Any] = Field(description="the resolved config of the first run")


class RunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    experiment_id: int
    experiment_name: str
    preset: str
    algorithm: str
    seed: int
    status: str = Field(
        description="queued, running, cancelling, succeeded, failed or cancelled",
        examples=["running"],
    )
    stage: str | None = Field(description="setup, fl or post while running")
    round: int
    total_rounds: int
    progress: float = Field(ge=0, le=1)
    eta_s: float | None
    error: str | None
    created_at: datetime
    queued_at: datetime | None = Field(description="when it last became queued")
    started_at: datetime | None = Field(description="when a worker first took it")
    claimed_at: datetime | None = Field(description="when the current attempt started")
    finished_at: datetime | None
    heartbeat_at: datetime | None
    attempt: int = Field(description="how many times a worker took it (1 on a first run)")
    worker: str | None = Field(description="the worker that runs (or last ran) it")
    group_id: str = Field(description="shared by the runs of one experiment's sweep")
    sweep: dict[str, Any] | None = Field(description="this run's values of the sweep's keys")
    time_limit_s: float | None = Field(description="time limit per attempt; null: the default")
    config: dict[str, Any]


class ExperimentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    preset: str
    owner: str = Field(validation_alias=AliasChoices("owner_name", "owner"))
    created_at: datetime
    runs: list[RunOut]


class MetricOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    round: int
    stage: str
    client: int
    task: str
    model: str
    split: str
    metric: str
    value: Measured
    n: int


class LossOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    round: int
    stage: str
    client: int
    model: str
    task: str
    loss: Measured
    steps: int


class MetricFilter(BaseModel):
    """Query parameters that select metric rows; all optional."""

    client: SqlInt | None = None
    task: str | None = None
    model: str | None = Field(
        default=None, description="global, global_ft, personal, final or constant"
    )
    split: str | None = Field(default=None, description="local or pooled")
    metric: str | None = None
    stage: str | None = Field(default=None, description="fl or post")
    round_min: SqlInt | None = None
    round_max: SqlInt | None = None


class LossFilter(BaseModel):
    client: SqlInt | None = None
    task: str | None = None
    model: str | None = None
    stage: str | None = None


class StepOut(BaseModel):
    """One value of one stage-2 optimizer step."""

    model_config = ConfigDict(from_attributes=True)

    round: int
    stage: str
    client: int
    model: str = Field(description="global_ft (TAP's teacher) or final (the student)")
    step: int = Field(description="1-based optimizer step of this fine-tuning")
    micro_batches: int = Field(description="micro-batches of the step, the value's mean over")
    term: str = Field(
        description="`task`: the task's own loss; else a term the algorithm adds to the loss, "
        "as added (`kd`: TAP's λ·KD)"
    )
    task: str = Field(description="empty for a term of the whole micro-batch (orthogonality)")
    value: Measured


class StepFilter(BaseModel):
    """Query parameters that select stage-2 step rows; all optional."""

    client: SqlInt | None = None
    model: str | None = Field(default=None, description="global_ft or final")
    stage: str | None = Field(default=None, description="post")
    term: str | None = Field(default=None, description="task, kd, orthogonality, …")
    task: str | None = None


class TransitionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    from_status: str | None
    to_status: str
    attempt: int
    reason: str | None


class RunDetail(RunOut):
    """One run with its latest per-client training losses and its status history."""

    latest_losses: list[LossOut] = Field(
        description="each client's most recent local-training loss per model and task"
    )
    transitions: list[TransitionOut]


class LogLine(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    seq: int = Field(validation_alias=AliasChoices("id", "seq"), description="pass as `after`")
    time: datetime
    level: str
    source: str = Field(description="api, worker, engine or reconciler")
    message: str


class ExperimentFilter(BaseModel):
    """Query parameters that select experiments; all optional, combined with AND."""

    owner: str | None = Field(default=None, description="the submitting user's name")
    status: RunStatusName | None = Field(
        default=None, description="experiments with at least one run in this status"
    )
    algorithm: str | None = Field(
        default=None, description="experiments with at least one run of this algorithm"
    )
    preset: str | None = None
    q: str | None = Field(
        default=None, max_length=200, description="text search in the name and preset"
    )


class ReplacementOut(BaseModel):
    """A TAP replacement: the personal model of a client took over a task's parameters."""

    model_config = ConfigDict(from_attributes=True)

    round: int
    client: int
    task: str
    global_loss: Measured
    personal_loss: Measured
    margin: Measured
    parameters_copied: int


class TrafficOut(BaseModel):
    """What crossed the network for one client in one FL round, one direction: the
    trainable tensors of its sub-model (``down``: server to client, ``up``: back)."""

    model_config = ConfigDict(from_attributes=True)

    round: int
    client: int
    direction: Literal["down", "up"]
    bytes: int = Field(description="bytes of the tensors, at their stored precision")
    parameters: int = Field(description="scalars sent")


class ArtifactOut(BaseModel):
    name: str = Field(description="pass to GET /runs/{id}/artifacts/{name}")
    kind: Literal["config", "adapter"]
    client: int | None = Field(description="the client whose final personalized state it is")
    size: int = Field(description="bytes")
    media_type: str


USER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,99}$"


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(pattern=USER_NAME_PATTERN, examples=["ada"])
    admin: bool = False


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    is_admin: bool
    token_prefix: str | None = Field(description="the token's first characters, to tell it apart")
    created_at: datetime
    revoked_at: datetime | None


class UserCreated(UserOut):
    token: str = Field(description="the bearer token; shown this once, only its hash is stored")


class CompareCurve(BaseModel):
    client: int
    task: str
    rounds: list[int]
    mean: list[Measured]
    std: list[Measured] = Field(
        description="population std over the group's runs; 0 for one run; null (with the "
        "mean) when a run's value is not finite"
    )
    n: list[int] = Field(description="runs with a value at that round")


class CompareRunValue(BaseModel):
    run_id: int
    seed: int
    value: Measured
    round: int = Field(description="the round of the value: the run's last evaluated round")


class CompareFinal(BaseModel):
    client: int
    task: str
    mean: Measured
    std: Measured
    n: int
    values: list[CompareRunValue] = Field(
        default_factory=list,
        description="each run's final value, to pair runs by seed (ordered by run id)",
    )


class CompareGroup(BaseModel):
    key: str = Field(description="a hash of the resolved config without its seed")
    algorithm: str
    label: str = Field(description="what sets the group apart, e.g. `tap, tap.margin=0.05`")
    run_ids: list[int]
    seeds: list[int]
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="the group's resolved config, flattened (`tap.margin`), without seed, "
        "name and device",
    )
    curves: list[CompareCurve]
    final: list[CompareFinal] = Field(
        description="each run's value at its last evaluated round, mean ± std over the runs"
    )


class CompareExcluded(BaseModel):
    run_id: int
    status: str


class CompareDiffering(BaseModel):
    key: str = Field(description="a flattened config key, e.g. `rounds`")
    values: list[Any] = Field(description="its value in each group, in the order of `groups`")


class CompareOut(BaseModel):
    metric: str
    split: str
    model: str
    higher_is_better: bool
    groups: list[CompareGroup] = Field(description="groups of the succeeded runs only")
    excluded: list[CompareExcluded] = Field(
        default_factory=list, description="runs left out because they have not succeeded"
    )
    differing: list[CompareDiffering] = Field(
        default_factory=list,
        description="config keys other than `algorithm` whose values differ between groups: "
        "the groups are then not the same experiment but for the algorithm",
    )
