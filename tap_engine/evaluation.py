"""Per-sample metrics of one model on one task's held-out data (TAP_SPEC section 6)."""

from __future__ import annotations

import torch

from tap_engine.data import IGNORE_INDEX, Pool
from tap_engine.models.tap_model import TapModel, TaskInfo
from tap_engine.text_metrics import TextScorer
from tap_engine.training import per_sample_loss


@torch.no_grad()
def evaluate_task(
    model: TapModel,
    info: TaskInfo,
    pool: Pool,
    batch_size: int,
    device: torch.device,
    text_scorer: TextScorer | None = None,
) -> dict[str, float]:
    """Metrics averaged per sample (not per batch): a short last batch weighs what it holds."""
    model.eval()
    sums: dict[str, float] = {}
    for start in range(0, len(pool), batch_size):
        index = torch.arange(start, min(start + batch_size, len(pool)))
        batch = pool.batch(index, device)
        prediction = model(info, batch).prediction.float()
        loss = per_sample_loss(info.family, prediction, batch)
        if info.family == "image_generation":
            per_sample = {"mse": loss.tolist()}
        elif info.family == "text_generation":
            targets = batch.target_ids
            real = targets != IGNORE_INDEX
            predicted = prediction.argmax(-1)  # per-position argmax decoding
            hits = ((predicted == targets) & real).sum(1)
            per_sample = {
                "loss": loss.tolist(),
                "perplexity": loss.exp().tolist(),
                "token_accuracy": (hits / real.sum(1).clamp(min=1)).tolist(),
            }
            if text_scorer is not None:
                # Predictions are read as long as the reference, as the head predicts in parallel.
                guesses = text_scorer.decode(torch.where(real, predicted, IGNORE_INDEX))
                per_sample |= text_scorer.score(guesses, text_scorer.decode(targets))
        else:
            per_sample = {
                "accuracy": (prediction.argmax(-1) == batch.labels).float().tolist(),
                "loss": loss.tolist(),
            }
        for name, values in per_sample.items():
            sums[name] = sums.get(name, 0.0) + float(sum(values))
    return {name: total / len(pool) for name, total in sums.items()}
