"""TAP: after local training, maybe replace; after FL, distil (TAP_SPEC sections 3 and 4).

Stage 1 is FedAvg plus a personalized model per client that adopts the freshly trained
global components of a task only when they beat its own by the task's margin. Stage 2
fine-tunes the global sub-model into a teacher (the ``fedavg_ft`` baseline) and distils it
into the personalized model. One TAP run thus reports ``global`` (FedAvg), ``global_ft``
(FedAvg + fine-tuning) and ``final`` (TAP) models side by side.
"""

from __future__ import annotations

import math
from typing import Any

from tap_engine.algorithms.fedavg import FedAvg
from tap_engine.client_states import ClientStates, Storage
from tap_engine.context import Context
from tap_engine.events import ModelKind, Replacement
from tap_engine.extra_losses import distillation
from tap_engine.models.state import State, count


class Tap(FedAvg):
    name = "tap"
    trainings_per_turn = 2
    kd = True

    def __init__(
        self,
        initial: State,
        components: list[list[str]],
        n_train: list[int],
        storage: Storage | None = None,
    ):
        super().__init__(initial, components, n_train, storage)
        self.post_trainings = 2  # teacher, then student
        self.personal = ClientStates(initial, components, storage)
        # Histories start at +inf: a client's first turn always adopts the global components.
        self.global_loss: list[dict[str, float]] = [{} for _ in components]
        self.personal_loss: list[dict[str, float]] = [{} for _ in components]

    def client_turn(self, ctx: Context, client: int) -> None:
        trained = ctx.train(client, self.global_sub_state(client), "global")
        personal = dict(self.personal[client])  # the stored state stays as it was
        replaced = False
        # Losses compared as the paper's code computes them (share-weighted sums over the
        # number of micro-batches), not the per-sample means the events report.
        for task, loss in trained.comparison_losses.items():
            self.global_loss[client][task] = loss
            before = self.personal_loss[client].get(task, math.inf)
            margin = ctx.margin(task)
            if loss + margin < before:
                copied = replace_task_components(personal, trained.state, ctx.task_names(task))
                replaced = True
                ctx.emit(
                    Replacement(
                        round=ctx.round,
                        client=client,
                        task=task,
                        global_loss=loss,
                        personal_loss=before,
                        margin=margin,
                        parameters_copied=copied,
                    )
                )
        # A replacement reshuffles the data, as the paper's code does, so the adopted
        # components do not see the very batches they were just trained on again.
        result = ctx.train(client, personal, "personal", reshuffle=replaced)
        self.personal[client] = result.state
        self.personal_loss[client].update(result.comparison_losses)
        self.uploads.append((trained.state, self.n_train[client]))

    def eval_states(self, client: int) -> dict[ModelKind, State]:
        return {"global": self.global_sub_state(client), "personal": self.personal[client]}

    def post_fl(self, ctx: Context, client: int) -> dict[ModelKind, State]:
        global_state = self.global_sub_state(client)
        teacher = ctx.fine_tune(client, global_state, "global_ft").state
        config = ctx.config
        kd_lambda = config.kd_lambda if self.kd else 0.0
        target_only = config.kd_text_positions == "target"
        # KD over every position the head predicts, as the paper's code does.
        width = config.backbone.max_target_length if kd_lambda and not target_only else None
        student = ctx.fine_tune(
            client,
            self.personal[client],
            "final",
            extra_loss=distillation(
                teacher, kd_lambda, config.kd_text_classification_factor, target_only
            ),
            target_width=width,
        ).state
        return {"global": global_state, "global_ft": teacher, "final": student}

    def state_dict(self) -> dict[str, Any]:
        return {
            "global": self.global_state,
            "personal": self.personal.state_dict(),
            "global_loss": self.global_loss,
            "personal_loss": self.personal_loss,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.global_state = state["global"]
        self.personal.load_state_dict(state["personal"])
        self.global_loss = state["global_loss"]
        self.personal_loss = state["personal_loss"]


class TapNoKD(Tap):
    """Ablation: stage 2 without distillation (lambda = 0), i.e. plain fine-tuning."""

    name = "tap_no_kd"
    kd = False


def replace_task_components(personal: State, trained: State, names: list[str]) -> int:
    """Put the named tensors of the just-trained global sub-model into the personalized
    one; every other tensor stays bit-identical. Returns the scalars copied. (States are
    never mutated in place, so the tensors are shared, not cloned.)"""
    copied = {name: trained[name] for name in names}
    personal.update(copied)
    return count(copied)
