"""``Context``: what the shared loop offers an algorithm during a round or stage 2."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from tap_engine.config import RunConfig
from tap_engine.data import ClientData
from tap_engine.events import Event, LocalTraining, ModelKind, Observer, Stage, TrainingStep
from tap_engine.models.state import State
from tap_engine.models.tap_model import TapModel, TaskInfo
from tap_engine.traffic import traffic_event
from tap_engine.training import ExtraLoss, LocalResult, LocalTrainer


def learning_rate(config: RunConfig, round_index: int) -> float:
    """Linear warm-up from min_lr to peak_lr over ``warmup_rounds``, then constant."""
    assert config.min_lr is not None and config.peak_lr is not None
    if config.warmup_rounds == 0:
        return config.peak_lr
    ramp = min(1.0, round_index / config.warmup_rounds)
    return config.min_lr + (config.peak_lr - config.min_lr) * ramp


def derive_seed(seed: int, round_no: int, client: int, purpose: str) -> int:
    """A seed per (run seed, round, client, purpose): every random draw of a local training
    is fixed by them, so a resumed run repeats exactly what an uninterrupted one does."""
    return (seed * 1_000_003 + round_no * 10_007 + client * 101 + zlib.crc32(purpose.encode())) % (
        2**63
    )


@dataclass
class Context:
    config: RunConfig
    clients: list[ClientData]
    model: TapModel
    trainer: LocalTrainer
    components: list[list[str]]
    infos: dict[str, TaskInfo]
    observer: Observer
    should_stop: Callable[[], bool]
    on_training: Callable[[], None] = lambda: None  # progress accounting
    round: int = 0  # 1-based; the last round during stage 2
    stage: Stage = "fl"
    _task_names: dict[str, list[str]] = field(default_factory=dict)

    def emit(self, event: Event) -> None:
        self.observer(event)

    def train(
        self,
        client: int,
        state: State,
        kind: ModelKind,
        *,
        extra_loss: ExtraLoss | None = None,
        reshuffle: bool = False,
    ) -> LocalResult:
        """A round's local training (E steps at the round's learning rate). Every model a
        client trains in a round sees the round's data order, as in the paper's code, unless
        ``reshuffle`` (TAP's personalized model after a replacement) asks for another.

        A ``global`` training during FL is what crosses the network: the client receives
        ``state`` from the server and uploads what it trained (TAP_SPEC section 3); a
        personal model never leaves the client."""
        assert self.config.local_steps is not None
        sent = kind == "global" and self.stage == "fl"
        if sent:
            self.emit(traffic_event(self.round, client, "down", state))
        result = self._run(
            client,
            state,
            kind,
            steps=self.config.local_steps,
            lr=learning_rate(self.config, self.round - 1),
            purpose="replaced" if reshuffle else "global",
            extra_loss=extra_loss,
        )
        if sent:
            self.emit(traffic_event(self.round, client, "up", result.state))
        return result

    def fine_tune(
        self,
        client: int,
        state: State,
        kind: ModelKind,
        *,
        iterations: int | None = None,
        extra_loss: ExtraLoss | None = None,
        target_width: int | None = None,
    ) -> LocalResult:
        """Stage-2 fine-tuning at ``min_lr`` for ``iterations`` micro-batches (default
        ``post_iterations``). Every stage-2 training of a client sees the same data order
        (the paper's code seeds teacher and student alike), so TAP's teacher is
        ``fedavg_ft`` and its student learns on the very batches the teacher did."""
        assert self.config.min_lr is not None
        return self._run(
            client,
            state,
            kind,
            micro_batches=self.config.post_iterations if iterations is None else iterations,
            lr=self.config.min_lr,
            purpose="teacher",
            extra_loss=extra_loss,
            target_width=target_width,
        )

    def _run(
        self,
        client: int,
        state: State,
        kind: ModelKind,
        *,
        steps: int | None = None,
        micro_batches: int | None = None,
        lr: float,
        purpose: str,
        extra_loss: ExtraLoss | None,
        target_width: int | None = None,
    ) -> LocalResult:
        if steps == 0 or micro_batches == 0:
            return LocalResult(state, {}, 0)
        result = self.trainer.train(
            self.clients[client].tasks,
            self.components[client],
            state,
            steps=steps,
            micro_batches=micro_batches,
            lr=lr,
            seed=derive_seed(self.config.seed, self.round, client, purpose),
            extra_loss=extra_loss,
            target_width=target_width,
            record_steps=self.stage == "post",  # stage 2's every step goes into the events
            should_stop=self.should_stop,
        )
        self.emit(
            LocalTraining(
                round=self.round,
                stage=self.stage,
                client=client,
                model=kind,
                steps=result.steps,
                micro_batches=result.micro_batches,
                losses=result.losses,
                extra_losses=result.extra_losses,
            )
        )
        for record in result.step_records:
            extras: dict[str, dict[str, float]] = {}
            for (term, task), value in record.extra_losses.items():
                extras.setdefault(term, {})[task] = value
            self.emit(
                TrainingStep(
                    round=self.round,
                    stage=self.stage,
                    client=client,
                    model=kind,
                    step=record.step,
                    micro_batches=record.micro_batches,
                    losses=record.losses,
                    extra_losses=extras,
                )
            )
        self.on_training()
        return result

    def margin(self, task: str) -> float:
        assert self.config.margins is not None
        return self.config.margins[self.infos[task].family]

    def task_names(self, task: str) -> list[str]:
        """Names of the trainable tensors of every component task ``task`` uses."""
        if task not in self._task_names:
            components = self.model.task_components(self.infos[task])
            self._task_names[task] = self.trainer.params.names(components)
        return self._task_names[task]
