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


# Extra loss terms an algorithm adds to the task losses (already weighted), keyed by
# (term, task); a term of the whole micro-batch (DisentAFL's) has task "".
ExtraTerms = dict[tuple[str, str], torch.Tensor]
ExtraLoss = Callable[[TapModel, list[TaskStep]], ExtraTerms]


@dataclass
class StepRecord:
    """One optimizer step: each task's loss and each extra term, as means over the step's
    micro-batches that hold them."""

    step: int  # 1-based
    micro_batches: int
    losses: dict[str, float]  # per task: its (unweighted) task loss
    extra_losses: dict[tuple[str, str], float]  # per (term, task): as added to the loss


@dataclass
class LocalResult:
    state: State
    losses: dict[str, float]  # per task: mean training loss per sample over the local run
    steps: int  # optimizer steps
    extra_losses: dict[str, float] = field(default_factory=dict)  # per term: mean per micro-batch
    # Per task, what TAP's replacement rule compares, as the paper's code computes it: the
    # sum over micro-batches of (task's share of the micro-batch x its loss), divided by the
    # number of micro-batches.
    comparison_losses: dict[str, float] = field(default_factory=dict)
    micro_batches: int = 0
    step_records: list[StepRecord] = field(default_factory=list)  # with record_steps only


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
        steps: int | None = None,
        micro_batches: int | None = None,
        lr: float,
        seed: int,
        extra_loss: ExtraLoss | None = None,
        target_width: int | None = None,
        record_steps: bool = False,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> LocalResult:
        """Local training on mixed batches over the client's tasks, for ``steps`` optimizer
        steps of ``grad_accum`` micro-batches each, or for ``micro_batches`` micro-batches
        with an optimizer step every ``grad_accum`` of them and after the last (stage 2, as
        the paper's code counts it).

        A micro-batch draws ``batch_size`` items from all tasks at once; each task's loss
        is scaled by its share of the micro-batch (TAP_SPEC section 3). ``target_width``
        pads text targets so that the head predicts that many positions (distillation over
        every position); ``record_steps`` keeps each optimizer step's losses.
        """
        if (steps is None) == (micro_batches is None):
            raise ValueError("give exactly one of steps and micro_batches")
        accum = self.grad_accum
        total_micro = micro_batches if micro_batches is not None else (steps or 0) * accum
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
        task_losses: list[tuple[int, str, torch.Tensor, int, float]] = []
        extra_terms: list[tuple[int, tuple[str, str], torch.Tensor]] = []

        model.train()
        for i in range(total_micro):
            if i % accum == 0:
                if should_stop():
                    raise Cancelled
                optimizer.zero_grad(set_to_none=True)
            if cursor + self.batch_size > len(order):
                order, cursor = torch.randperm(len(order), generator=generator), 0
            index = order[cursor : cursor + self.batch_size]
            cursor += self.batch_size
            step_no = i // accum + 1
            with self.autocast():
                steps_done, total = self._forward(tasks, index, sizes, offsets, target_width)
                for part in steps_done:
                    loss = task_loss(part.info.family, part.output.prediction, part.batch)
                    total = total + loss * part.fraction
                    task_losses.append(
                        (step_no, part.task.name, loss.detach(), len(part.batch), part.fraction)
                    )
                if extra_loss is not None:
                    for key, value in extra_loss(model, steps_done).items():
                        total = total + value
                        extra_terms.append((step_no, key, value.detach()))
            # Divided by grad_accum even for a short last group, as the paper's code does.
            (total / accum).backward()
            if (i + 1) % accum == 0 or i + 1 == total_micro:
                nn.utils.clip_grad_norm_(params, self.grad_clip, foreach=True)
                optimizer.step()

        trained = {n: p.detach().clone() for n, p in zip(names, params, strict=True)}
        loss_values = _values([v for _, _, v, _, _ in task_losses])
        extra_values = _values([v for _, _, v in extra_terms])
        optimizer_steps = -(-total_micro // accum)
        return LocalResult(
            trained,
            _mean_losses(tasks, task_losses, loss_values),
            optimizer_steps,
            _mean_extras(extra_terms, extra_values, max(total_micro, 1)),
            _comparison_losses(tasks, task_losses, loss_values, max(total_micro, 1)),
            total_micro,
            _step_records(task_losses, loss_values, extra_terms, extra_values, total_micro, accum)
            if record_steps
            else [],
        )

    def _forward(
        self, tasks, index, sizes, offsets, target_width
    ) -> tuple[list[TaskStep], torch.Tensor]:
        done = []
        for task, size, offset in zip(tasks, sizes, offsets, strict=True):
            rows = index[(index >= offset) & (index < offset + size)] - offset
            if rows.numel() == 0:
                continue
            batch = task.train.batch(rows, self.device, target_width)
            info = self.infos[task.name]
            done.append(
                TaskStep(task, info, batch, self.model(info, batch), len(rows) / len(index))
            )
        return done, torch.zeros((), device=self.device)


def _values(tensors: list[torch.Tensor]) -> list[float]:
    """Python floats of 0-dim tensors, with one device sync for all of them."""
    return torch.stack(tensors).tolist() if tensors else []


TaskLosses = list[tuple[int, str, torch.Tensor, int, float]]  # step, task, loss, n, share


def _mean_losses(
    tasks: list[TaskData], losses: TaskLosses, values: list[float]
) -> dict[str, float]:
    """Per task: the mean training loss per sample over the local run."""
    sums = {t.name: 0.0 for t in tasks}
    counts = {t.name: 0 for t in tasks}
    for (_, name, _, n, _), value in zip(losses, values, strict=True):
        sums[name] += value * n
        counts[name] += n
    return {name: sums[name] / counts[name] for name in sums if counts[name]}


def _comparison_losses(
    tasks: list[TaskData], losses: TaskLosses, values: list[float], micro_batches: int
) -> dict[str, float]:
    """Per task: sum over micro-batches of share x loss, over the number of micro-batches
    (the paper's code, ``utils/training.py``: ``history[task] = sum / len(dataloader)``)."""
    sums: dict[str, float] = {}
    for (_, name, _, _, share), value in zip(losses, values, strict=True):
        sums[name] = sums.get(name, 0.0) + share * value
    return {t.name: sums[t.name] / micro_batches for t in tasks if t.name in sums}


def _mean_extras(
    terms: list[tuple[int, tuple[str, str], torch.Tensor]], values: list[float], micro_batches: int
) -> dict[str, float]:
    """Per extra loss term (summed over tasks): the mean per micro-batch."""
    sums: dict[str, float] = {}
    for (_, (name, _), _), value in zip(terms, values, strict=True):
        sums[name] = sums.get(name, 0.0) + value
    return {name: total / micro_batches for name, total in sums.items()}


def _step_records(
    losses: TaskLosses,
    loss_values: list[float],
    terms: list[tuple[int, tuple[str, str], torch.Tensor]],
    term_values: list[float],
    micro_batches: int,
    accum: int,
) -> list[StepRecord]:
    steps = -(-micro_batches // accum)
    records = [
        StepRecord(s, min(accum, micro_batches - (s - 1) * accum), {}, {})
        for s in range(1, steps + 1)
    ]
    task_sums: list[dict[str, list[float]]] = [{} for _ in records]
    term_sums: list[dict[tuple[str, str], list[float]]] = [{} for _ in records]
    for (step, name, _, _, _), value in zip(losses, loss_values, strict=True):
        task_sums[step - 1].setdefault(name, []).append(value)
    for (step, key, _), value in zip(terms, term_values, strict=True):
        term_sums[step - 1].setdefault(key, []).append(value)
    for record, tasks, extra in zip(records, task_sums, term_sums, strict=True):
        record.losses = {k: sum(v) / len(v) for k, v in tasks.items()}
        record.extra_losses = {k: sum(v) / len(v) for k, v in extra.items()}
    return records
