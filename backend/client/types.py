"""The API's answers as TypedDicts: plain JSON dicts and lists, with their fields named.

They follow the response models in ``backend/schemas.py`` (docs/API.md lists every field).
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

RunStatus = Literal["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]
RUN_STATUSES: tuple[RunStatus, ...] = (
    "queued",
    "running",
    "cancelling",
    "succeeded",
    "failed",
    "cancelled",
)
# A run in one of these may still change, so pages that show it keep refreshing.
ACTIVE_STATUSES: frozenset[str] = frozenset({"queued", "running", "cancelling"})


class Health(TypedDict):
    status: Literal["ok", "degraded"]
    database: bool
    redis: bool


class Preset(TypedDict):
    name: str
    description: str
    algorithm: NotRequired[str]
    rounds: NotRequired[int]
    clients: NotRequired[int]
    backbone: NotRequired[str]
    pairs: NotRequired[list[str]]  # modality-task pairs, in the order `pairs` keeps them


class Transition(TypedDict):
    at: str
    from_status: str | None
    to_status: str
    attempt: int
    reason: str | None


class Run(TypedDict):
    id: int
    experiment_id: int
    experiment_name: NotRequired[str | None]
    preset: NotRequired[str | None]
    algorithm: str
    seed: int
    status: RunStatus
    stage: str | None
    round: int | None
    total_rounds: int | None
    progress: NotRequired[float | None]
    eta_s: NotRequired[float | None]
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    config: NotRequired[dict[str, Any] | None]
    group_id: NotRequired[str | None]
    sweep: NotRequired[dict[str, Any] | None]
    owner: NotRequired[str | None]
    attempt: NotRequired[int]
    worker: NotRequired[str | None]
    transitions: NotRequired[list[Transition]]


class ExperimentPreview(TypedDict):
    runs: int
    combinations: list[dict[str, Any]]
    config: dict[str, Any]


class Experiment(TypedDict):
    id: int
    name: str
    preset: str
    owner: NotRequired[str | None]
    created_at: str
    runs: list[Run]


class MetricRow(TypedDict):
    round: int
    stage: str
    client: int
    task: str
    model: str
    split: str
    metric: str
    value: float | None  # null: not a finite number


class LossRow(TypedDict):
    round: int
    stage: str
    client: int
    model: str
    task: str
    loss: float | None
    steps: int


class StepRow(TypedDict):
    """One value of one stage-2 optimizer step: a task's loss (term ``task``) or a term the
    algorithm adds to it (``kd``: TAP's λ·KD, as added)."""

    round: int
    stage: str
    client: int
    model: str
    step: int
    micro_batches: int
    term: str
    task: str
    value: float | None


class LogLine(TypedDict):
    seq: int
    time: str
    level: str
    source: str
    message: str


class ReplacementRow(TypedDict):
    round: int
    client: int
    task: str
    global_loss: float | None
    personal_loss: float | None
    margin: float | None
    parameters_copied: int


class TrafficRow(TypedDict):
    round: int
    client: int
    direction: str  # down: server to client; up: client to server
    bytes: int
    parameters: int


class CompareCurve(TypedDict):
    client: int
    task: str
    rounds: list[int]
    mean: list[float]
    std: list[float]
    n: list[int]


class CompareRunValue(TypedDict):
    run_id: int
    seed: int
    value: float
    round: int


class CompareFinal(TypedDict):
    client: int
    task: str
    mean: float
    std: float
    n: int
    values: list[CompareRunValue]  # each run's final value, to pair runs by seed


class CompareGroup(TypedDict):
    key: str
    algorithm: str
    label: str
    run_ids: list[int]
    seeds: list[int]
    config: dict[str, Any]  # flattened (``tap.margin``), without seed, name and device
    curves: list[CompareCurve]
    final: list[CompareFinal]


class CompareExcluded(TypedDict):
    run_id: int
    status: str


class CompareDiffering(TypedDict):
    key: str
    values: list[Any]  # one per group, in the order of ``groups``


class Comparison(TypedDict):
    """``GET /compare``: runs grouped by resolved config minus seed, mean ± std over seeds."""

    metric: str
    split: str
    model: str
    higher_is_better: bool
    groups: list[CompareGroup]  # the succeeded runs only
    excluded: list[CompareExcluded]  # runs left out: not succeeded
    differing: list[CompareDiffering]  # config keys besides the algorithm that differ


class RunPage(TypedDict):
    items: list[Run]
    total: int


class ExperimentPage(TypedDict):
    items: list[Experiment]
    total: int


class LogPage(TypedDict):
    items: list[LogLine]
    total: int


class Artifact(TypedDict):
    name: str
    kind: Literal["config", "adapter"]
    client: int | None
    size: int
    media_type: str


class User(TypedDict):
    id: int
    name: str
    is_admin: bool
    token_prefix: str | None
    created_at: str
    revoked_at: str | None


class NewUser(User):
    token: str  # shown this once; the API keeps only its hash


class CatalogAlgorithm(TypedDict):
    name: str
    description: str
    color: str | None  # None: the dashboard picks one by catalog order


class CatalogMetric(TypedDict):
    name: str
    higher_is_better: bool
    families: list[str]
    description: str
    quality: bool  # False for losses: a training signal, not what a results table reports
    main_for: list[str]  # the task families judged on this metric first


class CatalogPreset(TypedDict):
    name: str
    description: str
    defaults: dict[str, Any]  # resolved values: algorithm, rounds, seed, clients, …
    pairs: NotRequired[list[str]]  # modality-task pairs, in the order `pairs` keeps them


class Catalog(TypedDict):
    """``GET /catalog``: what the server offers, declared once in the engine."""

    algorithms: list[CatalogAlgorithm]
    task_families: list[str]
    metrics: list[CatalogMetric]
    presets: list[CatalogPreset]


# Query filters, for ``**filters`` of the client's methods (every one optional).


class MetricFilters(TypedDict, total=False):
    client: int
    task: str
    model: str  # global, personal, global_ft, final, constant
    split: str  # local or pooled
    metric: str
    stage: str  # fl or post
    round_min: int
    round_max: int


class LossFilters(TypedDict, total=False):
    client: int
    task: str
    model: str
    stage: str


class StepFilters(TypedDict, total=False):
    client: int
    model: str  # global_ft or final
    stage: str
    term: str  # task, kd, orthogonality, …
    task: str


class ReplacementFilters(TypedDict, total=False):
    client: int
    task: str


class TrafficFilters(TypedDict, total=False):
    client: int
    direction: str


class ExperimentFilters(TypedDict, total=False):
    owner: str
    status: str
    algorithm: str
    preset: str
    q: str  # text in the name or preset
