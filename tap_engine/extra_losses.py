"""Loss terms algorithms add to the task losses: TAP's stage-2 distillation and
DisentAFL's orthogonality. Each factory returns an ``ExtraLoss`` for ``LocalTrainer.train``."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch.func import functional_call

from tap_engine.data import IGNORE_INDEX
from tap_engine.models.state import State
from tap_engine.models.tap_model import TapModel
from tap_engine.training import ExtraLoss, ExtraTerms, TaskStep


def kd_divergence(
    student: torch.Tensor, teacher: torch.Tensor, positions: torch.Tensor | None = None
) -> torch.Tensor:
    """KL(softmax(teacher) || softmax(student)) at temperature 1, exactly as the paper's
    ``knowledge_distillation_loss``: ``kl_div(log_softmax(student), softmax(teacher),
    reduction="batchmean")``, i.e. summed over every element but the batch dimension and
    divided by the batch size.

    The softmax is over the last dimension: classes ``[B, C]``; the vocabulary at each
    target position ``[B, T, V]``; and for image generation ``[B, 3, 64, 64]`` each pixel
    row (the image's last dimension), which the paper's code treats as a distribution.
    ``positions`` ``[B, T]`` (text generation only) keeps the sum to those positions.
    """
    log_student = F.log_softmax(student.float(), dim=-1)
    target = F.softmax(teacher.float(), dim=-1)
    if positions is None:
        return F.kl_div(log_student, target, reduction="batchmean")
    pointwise = F.kl_div(log_student, target, reduction="none").sum(-1)  # [B, T]
    return (pointwise * positions).sum() / student.shape[0]


def distillation(
    teacher: State, kd_lambda: float, text_classification_factor: float, target_only: bool
) -> ExtraLoss | None:
    """TAP stage 2: ``lambda * KD`` per task, added to the loss as it is (the paper's code
    does not scale it by the task's share of the batch). ``target_only``: text generation
    KD over each sample's target tokens rather than every predicted position.

    None when lambda is 0, so that the run is exactly plain fine-tuning: no teacher pass,
    no extra randomness."""
    if kd_lambda == 0:
        return None

    def loss(model: TapModel, steps: list[TaskStep]) -> ExtraTerms:
        was_training = model.training
        model.eval()  # the teacher predicts without dropout
        with torch.no_grad():
            targets = [functional_call(model, teacher, (s.info, s.batch)).prediction for s in steps]
        model.train(was_training)
        terms: ExtraTerms = {}
        for step, target in zip(steps, targets, strict=True):
            family = step.info.family
            weight = kd_lambda * (
                text_classification_factor if family == "text_classification" else 1.0
            )
            positions = None
            if family == "text_generation" and target_only:
                positions = (step.batch.target_ids != IGNORE_INDEX).float()
            kd = kd_divergence(step.output.prediction, target, positions)
            terms[("kd", step.task.name)] = weight * kd
        return terms

    return loss


def orthogonality(weight: float) -> ExtraLoss:
    """DisentAFL: mean squared cosine similarity between the pooled modality->task MoTE
    outputs of different (modality, task family) groups in the micro-batch."""

    def loss(model: TapModel, steps: list[TaskStep]) -> ExtraTerms:
        groups: dict[tuple[str, str], list[torch.Tensor]] = {}
        for step in steps:
            for modality, pooled in step.output.mote_modality_task.items():
                groups.setdefault((modality, step.info.family), []).append(pooled)
        features = [F.normalize(torch.cat(parts).float(), dim=-1) for parts in groups.values()]
        if len(features) < 2:
            device = steps[0].output.prediction.device
            return {("orthogonality", ""): torch.zeros((), device=device)}
        pairs = [(a @ b.T).pow(2).mean() for a, b in itertools.combinations(features, 2)]
        return {("orthogonality", ""): weight * torch.stack(pairs).mean()}

    return loss
