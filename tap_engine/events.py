"""Typed events the engine emits while it runs.

The engine knows nothing about where events go: the CLI writes them as JSON lines, the
worker writes them to SQL. Every event serialises to a flat JSON object with a ``type``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Stage = Literal["fl", "post"]
# global: the FL model; personal: TAP's/local's own; global_ft: the global model fine-tuned
# after FL (TAP's teacher); final: what the algorithm delivers after stage 2; constant:
# text generation's chance level, the client's most frequent training answer every time.
ModelKind = Literal["global", "personal", "global_ft", "final", "constant"]
Split = Literal["local", "pooled"]


class EventModel(BaseModel):
    # A first replacement compares against +inf, and a diverged loss is NaN: JSON lines
    # write them as "Infinity" / "NaN" strings, which parse_event reads back as floats.
    model_config = ConfigDict(ser_json_inf_nan="strings")


class ClientInfo(BaseModel):
    client: int
    tasks: list[str]
    modalities: list[str]
    n_train: int
    n_test: int


class RunStarted(EventModel):
    type: Literal["run_started"] = "run_started"
    algorithm: str
    seed: int
    total_rounds: int
    resumed_from_round: int = 0
    clients: list[ClientInfo]
    trainable_parameters: int
    frozen_parameters: int


class RoundStarted(EventModel):
    type: Literal["round_started"] = "round_started"
    round: int
    participants: list[int]
    lr: float


class LocalTraining(EventModel):
    """Mean training loss per task over one client's local training in a round."""

    type: Literal["local_training"] = "local_training"
    round: int
    stage: Stage = "fl"
    client: int
    model: ModelKind
    steps: int = Field(description="optimizer steps")
    micro_batches: int = 0
    losses: dict[str, float]
    extra_losses: dict[str, float] = Field(
        default_factory=dict,
        description="algorithm loss terms (kd, orthogonality) as added to the loss, summed "
        "over tasks, mean per micro-batch",
    )


class TrainingStep(EventModel):
    """One optimizer step of a stage-2 fine-tuning: each task's loss and each term the
    algorithm adds (TAP's lambda x KD per task), means over the step's micro-batches."""

    type: Literal["training_step"] = "training_step"
    round: int
    stage: Stage
    client: int
    model: ModelKind
    step: int = Field(description="1-based optimizer step of this fine-tuning")
    micro_batches: int
    losses: dict[str, float] = Field(description="per task: its task loss")
    extra_losses: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="per term, per task: the value added to the loss (task '' for a term of "
        "the whole micro-batch)",
    )


class Replacement(EventModel):
    type: Literal["replacement"] = "replacement"
    round: int
    client: int
    task: str
    global_loss: float
    personal_loss: float
    margin: float
    parameters_copied: int


Direction = Literal["down", "up"]  # down: server -> client; up: client -> server


class RoundTraffic(EventModel):
    """What crossed the network for one client in one FL round, one direction: the
    trainable tensors of its sub-model (the frozen backbone never travels)."""

    type: Literal["round_traffic"] = "round_traffic"
    round: int
    client: int
    direction: Direction
    bytes: int = Field(description="bytes of the tensors sent, at their stored precision")
    parameters: int = Field(description="scalars sent")


class Evaluation(EventModel):
    """One metric of one model on one client's task, on local or pooled test data."""

    type: Literal["evaluation"] = "evaluation"
    round: int
    stage: Stage
    client: int
    task: str
    model: ModelKind
    split: Split
    metric: str
    value: float
    n: int = Field(description="test samples the value averages over")


class MetricSkipped(EventModel):
    """A metric this run cannot compute here (e.g. BERTScore's model is not available)."""

    type: Literal["metric_skipped"] = "metric_skipped"
    metric: str
    reason: str


class Progress(EventModel):
    type: Literal["progress"] = "progress"
    stage: Stage
    round: int
    total_rounds: int
    fraction: float
    elapsed_s: float
    eta_s: float | None


class RunFinished(EventModel):
    type: Literal["run_finished"] = "run_finished"
    status: Literal["succeeded", "cancelled"]
    rounds_completed: int
    elapsed_s: float


Event = Annotated[
    RunStarted
    | RoundStarted
    | LocalTraining
    | TrainingStep
    | Replacement
    | RoundTraffic
    | Evaluation
    | MetricSkipped
    | Progress
    | RunFinished,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

Observer = Callable[[Event], None]


def parse_event(data: dict | str | bytes) -> Event:
    """An event from its JSON object (as written by ``model_dump``/``model_dump_json``)."""
    if isinstance(data, dict):
        return EVENT_ADAPTER.validate_python(data)
    return EVENT_ADAPTER.validate_json(data)
