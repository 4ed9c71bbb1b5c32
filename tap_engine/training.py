"""Local training of one client's model: the shared inner loop of every algorithm."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tap_engine.data import TaskData
from tap_engine.model import State, component_of, load_sub_state


class Cancelled(Exception):
    """``should_stop`` answered True between two optimizer steps."""


@dataclass
class LocalResult:
    state: State
    losses: dict[str, float]  # per task: mean training loss per sample over the local run
    steps: int


def task_loss(
    model: nn.Module, task: TaskData, images: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Mean per-sample loss of one task on a batch."""
    output = model(task.name, images)
    if task.spec.family == "image_generation":
        return F.mse_loss(output, images)  # reconstruct the normalised input
    return F.cross_entropy(output, labels)


def local_train(
    model: nn.Module,
    components: list[str],
    state: State,
    tasks: list[TaskData],
    *,
    steps: int,
    batch_size: int,
    grad_accum: int,
    lr: float,
    weight_decay: float,
    grad_clip: float,
    seed: int,
    device: torch.device,
    should_stop: Callable[[], bool] = lambda: False,
) -> LocalResult:
    """Train ``state`` for ``steps`` optimizer steps on mixed batches over the client's tasks.

    A micro-batch draws ``batch_size`` items from all tasks at once; each task's loss is
    scaled by its share of the batch, so tasks weigh by their data size.
    """
    load_sub_state(model, state, components)
    params = [p for k, p in model.named_parameters() if component_of(k, components)]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout
    sizes = torch.tensor([len(t.train) for t in tasks])
    offsets = torch.cumsum(sizes, 0) - sizes
    order = torch.randperm(int(sizes.sum()), generator=generator)
    cursor = 0
    loss_sum = {t.name: 0.0 for t in tasks}
    loss_n = {t.name: 0 for t in tasks}

    model.train()
    for _ in range(steps):
        if should_stop():
            raise Cancelled
        optimizer.zero_grad(set_to_none=True)
        for _ in range(grad_accum):
            if cursor + batch_size > len(order):
                order, cursor = torch.randperm(len(order), generator=generator), 0
            batch = order[cursor : cursor + batch_size]
            cursor += batch_size
            total = torch.zeros((), device=device)
            for t, task in enumerate(tasks):
                local = batch[(batch >= offsets[t]) & (batch < offsets[t] + sizes[t])] - offsets[t]
                if local.numel() == 0:
                    continue
                images = task.train.images[local].to(device, non_blocking=True)
                labels = task.train.labels[local].to(device, non_blocking=True)
                loss = task_loss(model, task, images, labels)
                total = total + loss * (local.numel() / len(batch))
                loss_sum[task.name] += float(loss.detach()) * local.numel()
                loss_n[task.name] += int(local.numel())
            (total / grad_accum).backward()
        nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()

    trained = {
        k: p.detach().clone() for k, p in model.named_parameters() if component_of(k, components)
    }
    losses = {name: loss_sum[name] / loss_n[name] for name in loss_sum if loss_n[name]}
    return LocalResult(trained, losses, steps)
