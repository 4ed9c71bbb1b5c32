"""Local training of one client's model: the inner loop every algorithm shares."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from tap_engine.data import IGNORE_INDEX, Batch, TaskData
from tap_engine.models.state import ParameterIndex, State
from tap_engine.models.tap_model import ModelOutput, TapModel, TaskInfo


class Cancelled(Exception):
    """``should_stop`` answered True between two optimizer steps."""


@dataclass
class TaskStep:
    """One task's part of a micro-batch, after the forward pass."""

    task: TaskData
    info: TaskInfo
    batch: Batch
    output: ModelOutput
    fraction: float  # the task's share of the micro-batch


# Extra loss terms an algorithm adds to the task losses (already weighted), by name.
ExtraLoss = Callable[[TapModel, list[TaskStep]], dict[str, torch.Tensor]]


@dataclass
class LocalResult:
    state: State
    losses: dict[str, float]  # per task: mean training loss per sample over the local run
    steps: int
    extra_losses: dict[str, float] = field(default_factory=dict)  # per term: mean per step


def per_sample_loss(family: str, prediction: torch.Tensor, batch: Batch) -> torch.Tensor:
    """The task loss of every sample, ``[B]``."""
    if family == "image_generation":  # reconstruct the normalised input
        return F.mse_loss(prediction.float(), batch.images, reduction="none").flatten(1).mean(1)
    if family == "text_generation":
        targets = batch.target_ids
        tokens = F.cross_entropy(
            prediction.float().transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none"
        )
        counts = (targets != IGNORE_INDEX).sum(1).clamp(min=1)
        return tokens.sum(1) / counts
    return F.cross_entropy(prediction.float(), batch.labels, reduction="none")


def task_loss(family: str, prediction: torch.Tensor, batch: Batch) -> torch.Tensor:
    if family == "text_generation":  # token-level mean over the batch, ignoring padding
        return F.cross_entropy(
            prediction.float().transpose(1, 2), batch.target_ids, ignore_index=IGNORE_INDEX
        )
    return per_sample_loss(family, prediction, batch).mean()


@dataclass
class LocalTrainer:
    """Trains a client's trainable state in the one shared model, then takes it back out."""

    model: TapModel
    infos: dict[str, TaskInfo]
    device: torch.device
    batch_size: int
    grad_accum: int
    weight_decay: float
    grad_clip: float
    bf16: bool = False
    params: ParameterIndex = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.params = ParameterIndex(self.model)

    def autocast(self):
        if self.bf16 and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train(
        self,
        tasks: list[TaskData],
        components: list[str],
        state: State,
        *,
        steps: int,
        lr: float,
        seed: int,
        extra_loss: ExtraLoss | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> LocalResult:
        """``steps`` optimizer steps on mixed batches over the client's tasks.

        A micro-batch draws ``batch_size`` items from all tasks at once; each task's loss
        is scaled by its share of the micro-batch (TAP_SPEC section 3).
        """
        model = self.model
        self.params.load(state, components)
        names = self.params.names(components)
        params = [self.params.params[n] for n in names]
        # foreach on CPU: one C++ loop instead of a Python loop over tensors, bit-identical
        # to the per-tensor update; fused (one kernel) on CUDA.
        on_cuda = self.device.type == "cuda"
        optimizer = torch.optim.AdamW(
            params,
            lr=lr,
            weight_decay=self.weight_decay,
            fused=on_cuda,
            foreach=None if on_cuda else True,
        )
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)  # dropout
        sizes = [len(t.train) for t in tasks]
        offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        order = torch.randperm(sum(sizes), generator=generator)
        cursor = 0
        # Losses stay tensors until the end: reading one is a device sync on CUDA.
        task_losses: list[tuple[str, torch.Tensor, int]] = []
        extra_terms: list[tuple[str, torch.Tensor]] = []

        model.train()
        for _ in range(steps):
            if should_stop():
                raise Cancelled
            optimizer.zero_grad(set_to_none=True)
            for _ in range(self.grad_accum):
                if cursor + self.batch_size > len(order):
                    order, cursor = torch.randperm(len(order), generator=generator), 0
                index = order[cursor : cursor + self.batch_size]
                cursor += self.batch_size
                with self.autocast():
                    steps_done, total = self._forward(tasks, index, sizes, offsets)
                    for step in steps_done:
                        loss = task_loss(step.info.family, step.output.prediction, step.batch)
                        total = total + loss * step.fraction
                        task_losses.append((step.task.name, loss.detach(), len(step.batch)))
                    if extra_loss is not None:
                        for term, value in extra_loss(model, steps_done).items():
                            total = total + value
                            extra_terms.append((term, value.detach()))
                (total / self.grad_accum).backward()
            nn.utils.clip_grad_norm_(params, self.grad_clip, foreach=True)
            optimizer.step()

        trained = {n: p.detach().clone() for n, p in zip(names, params, strict=True)}
        extras = _mean_extras(extra_terms, max(steps * self.grad_accum, 1))
        return LocalResult(trained, _mean_losses(tasks, task_losses), steps, extras)

    def _forward(self, tasks, index, sizes, offsets) -> tuple[list[TaskStep], torch.Tensor]:
        done = []
        for task, size, offset in zip(tasks, sizes, offsets, strict=True):
            rows = index[(index >= offset) & (index < offset + size)] - offset
            if rows.numel() == 0:
                continue
            batch = task.train.batch(rows, self.device)
            info = self.infos[task.name]
            done.append(
                TaskStep(task, info, batch, self.model(info, batch), len(rows) / len(index))
            )
        return done, torch.zeros((), device=self.device)


def _values(tensors: list[torch.Tensor]) -> list[float]:
    """Python floats of 0-dim tensors, with one device sync for all of them."""
    return torch.stack(tensors).tolist() if tensors else []


def _mean_losses(
    tasks: list[TaskData], losses: list[tuple[str, torch.Tensor, int]]
) -> dict[str, float]:
    """Per task: the mean training loss per sample over the local run."""
    sums = {t.name: 0.0 for t in tasks}
    counts = {t.name: 0 for t in tasks}
    for (name, _, n), value in zip(losses, _values([v for _, v, _ in losses]), strict=True):
        sums[name] += value * n
        counts[name] += n
    return {name: sums[name] / counts[name] for name in sums if counts[name]}


def _mean_extras(terms: list[tuple[str, torch.Tensor]], micro_batches: int) -> dict[str, float]:
    """Per extra loss term: the mean per micro-batch."""
    sums: dict[str, float] = {}
    for (name, _), value in zip(terms, _values([v for _, v in terms]), strict=True):
        sums[name] = sums.get(name, 0.0) + value
    return {name: total / micro_batches for name, total in sums.items()}
