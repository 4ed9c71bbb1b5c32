"""Local training of one client's model: the inner loop every algorithm shares."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from tap_engine.data import IGNORE_INDEX, Batch, TaskData
from tap_engine.models.state import State, load_sub_state, trainable_names
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

    def domain_id(self, task: TaskData) -> int:
        return self.model.domains.index(task.spec.domain)

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
        load_sub_state(model, state, components)
        names = trainable_names(model, components)
        named = dict(model.named_parameters())
        params = [named[n] for n in names]
        optimizer = torch.optim.AdamW(
            params, lr=lr, weight_decay=self.weight_decay, fused=self.device.type == "cuda"
        )
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)  # dropout
        sizes = torch.tensor([len(t.train) for t in tasks])
        offsets = torch.cumsum(sizes, 0) - sizes
        order = torch.randperm(int(sizes.sum()), generator=generator)
        cursor = 0
        loss_sum = {t.name: 0.0 for t in tasks}
        loss_n = {t.name: 0 for t in tasks}
        extra_sum: dict[str, float] = {}

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
                        loss_sum[step.task.name] += float(loss.detach()) * len(step.batch)
                        loss_n[step.task.name] += len(step.batch)
                    if extra_loss is not None:
                        for term, value in extra_loss(model, steps_done).items():
                            total = total + value
                            extra_sum[term] = extra_sum.get(term, 0.0) + float(value.detach())
                (total / self.grad_accum).backward()
            nn.utils.clip_grad_norm_(params, self.grad_clip)
            optimizer.step()

        trained = {n: named[n].detach().clone() for n in names}
        losses = {k: loss_sum[k] / loss_n[k] for k in loss_sum if loss_n[k]}
        micro = max(steps * self.grad_accum, 1)
        return LocalResult(trained, losses, steps, {k: v / micro for k, v in extra_sum.items()})

    def _forward(self, tasks, index, sizes, offsets) -> tuple[list[TaskStep], torch.Tensor]:
        done = []
        for t, task in enumerate(tasks):
            rows = index[(index >= offsets[t]) & (index < offsets[t] + sizes[t])] - offsets[t]
            if rows.numel() == 0:
                continue
            batch = task.train.batch(rows, self.domain_id(task), self.device)
            info = self.infos[task.name]
            done.append(
                TaskStep(task, info, batch, self.model(info, batch), len(rows) / len(index))
            )
        return done, torch.zeros((), device=self.device)
