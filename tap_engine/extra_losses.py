"""Loss terms algorithms add to the task losses: TAP's stage-2 distillation and
DisentAFL's orthogonality. Each factory returns an ``ExtraLoss`` for ``LocalTrainer.train``."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch.func import functional_call

from tap_engine.data import IGNORE_INDEX, Batch
from tap_engine.models.state import State
from tap_engine.models.tap_model import TapModel
from tap_engine.training import ExtraLoss, TaskStep


def kd_divergence(
    family: str, student: torch.Tensor, teacher: torch.Tensor, batch: Batch
) -> torch.Tensor:
    """Mean per sample of KL(softmax(teacher) || softmax(student)), temperature 1.

    Classification: over classes. Text generation: over the vocabulary at every real
    target position. Image generation: over the last image dimension (the width), as the
    paper's code does; it treats each pixel row as a distribution.
    """
    s, t = F.log_softmax(student.float(), -1), F.log_softmax(teacher.float(), -1)
    pointwise = F.kl_div(s, t, log_target=True, reduction="none").sum(-1)  # over the softmax dim
    if family == "text_generation":
        real = (batch.target_ids != IGNORE_INDEX).float()
        return ((pointwise * real).sum(1) / real.sum(1).clamp(min=1)).mean()
    if family == "image_generation":  # [B, 3, 64] rows -> mean per sample
        return pointwise.flatten(1).mean(1).mean()
    return pointwise.mean()


def distillation(
    teacher: State, kd_lambda: float, text_classification_factor: float
) -> ExtraLoss | None:
    """TAP stage 2: ``lambda * KL(teacher || student)`` per task (None when lambda is 0, so
    that the run is exactly plain fine-tuning: no teacher pass, no extra randomness)."""
    if kd_lambda == 0:
        return None

    def loss(model: TapModel, steps: list[TaskStep]) -> dict[str, torch.Tensor]:
        was_training = model.training
        model.eval()  # the teacher predicts without dropout
        with torch.no_grad():
            targets = [functional_call(model, teacher, (s.info, s.batch)).prediction for s in steps]
        model.train(was_training)
        total = torch.zeros((), device=targets[0].device)
        for step, target in zip(steps, targets, strict=True):
            weight = kd_lambda * (
                text_classification_factor if step.info.family == "text_classification" else 1.0
            )
            kd = kd_divergence(step.info.family, step.output.prediction, target, step.batch)
            total = total + weight * kd * step.fraction
        return {"kd": total}

    return loss


def orthogonality(weight: float) -> ExtraLoss:
    """DisentAFL: mean squared cosine similarity between the pooled modality->task MoTE
    outputs of different (modality, task family) groups in the micro-batch."""

    def loss(model: TapModel, steps: list[TaskStep]) -> dict[str, torch.Tensor]:
        groups: dict[tuple[str, str], list[torch.Tensor]] = {}
        for step in steps:
            for modality, pooled in step.output.mote_modality_task.items():
                groups.setdefault((modality, step.info.family), []).append(pooled)
        features = [F.normalize(torch.cat(parts).float(), dim=-1) for parts in groups.values()]
        if len(features) < 2:
            device = steps[0].output.prediction.device
            return {"orthogonality": torch.zeros((), device=device)}
        pairs = [(a @ b.T).pow(2).mean() for a, b in itertools.combinations(features, 2)]
        return {"orthogonality": weight * torch.stack(pairs).mean()}

    return loss
