"""Per-sample metrics of one model on one task's held-out data."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tap_engine.data import Pool


@torch.no_grad()
def evaluate_task(
    model: nn.Module, task: str, family: str, pool: Pool, batch_size: int, device: torch.device
) -> dict[str, float]:
    """Metrics averaged per sample (not per batch): a short last batch weighs what it holds."""
    model.eval()
    sums: dict[str, float] = {}
    for start in range(0, len(pool), batch_size):
        images = pool.images[start : start + batch_size].to(device)
        labels = pool.labels[start : start + batch_size].to(device)
        output = model(task, images)
        if family == "image_generation":
            per_sample = {"mse": F.mse_loss(output, images, reduction="none").flatten(1).mean(1)}
        else:
            per_sample = {
                "accuracy": (output.argmax(-1) == labels).float(),
                "loss": F.cross_entropy(output, labels, reduction="none"),
            }
        for name, values in per_sample.items():
            sums[name] = sums.get(name, 0.0) + float(values.sum())
    return {name: total / len(pool) for name, total in sums.items()}
