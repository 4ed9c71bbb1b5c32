"""DisentAFL: FedAvg plus an orthogonality loss between the modality->task MoTE outputs of
different (modality, task family) groups; ``disentafl_ft`` fine-tunes with the same loss."""

from __future__ import annotations

from tap_engine.algorithms.fedavg import FedAvg
from tap_engine.context import Context
from tap_engine.extra_losses import orthogonality
from tap_engine.training import ExtraLoss


class DisentAFL(FedAvg):
    name = "disentafl"

    def extra_loss(self, ctx: Context) -> ExtraLoss | None:
        return orthogonality(ctx.config.disentafl_weight)


class DisentAFLFineTuned(DisentAFL):
    name = "disentafl_ft"
    post_factor = 1
