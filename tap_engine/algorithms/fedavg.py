"""FedAvg and its fine-tuned variants: clients train the global sub-model, the server
averages by dataset size; ``*_ft`` fine-tunes it locally after FL (TAP_SPEC section 5)."""

from __future__ import annotations

from typing import Any

from tap_engine.aggregation import weighted_average
from tap_engine.algorithms.base import Algorithm, GlobalModel
from tap_engine.client_states import Storage
from tap_engine.context import Context
from tap_engine.events import ModelKind
from tap_engine.models.state import State
from tap_engine.training import ExtraLoss


class FedAvg(GlobalModel, Algorithm):
    name = "fedavg"
    post_factor = 0  # stage-2 fine-tuning: this many times post_iterations

    def __init__(
        self,
        initial: State,
        components: list[list[str]],
        n_train: list[int],
        storage: Storage | None = None,
    ):
        super().__init__(initial, components, n_train, storage)
        self.global_state = dict(initial)
        self._client_names = {}
        self.uploads: list[tuple[State, int]] = []
        self.post_trainings = 1 if self.post_factor else 0

    def extra_loss(self, ctx: Context) -> ExtraLoss | None:
        return None

    def client_turn(self, ctx: Context, client: int) -> None:
        result = ctx.train(
            client, self.global_sub_state(client), "global", extra_loss=self.extra_loss(ctx)
        )
        self.uploads.append((result.state, self.n_train[client]))

    def end_round(self) -> None:
        self.global_state = weighted_average(self.global_state, self.uploads)
        self.uploads = []

    def eval_states(self, client: int) -> dict[ModelKind, State]:
        return {"global": self.global_sub_state(client)}

    def post_fl(self, ctx: Context, client: int) -> dict[ModelKind, State]:
        state = self.global_sub_state(client)
        if self.post_factor:
            state = ctx.fine_tune(
                client,
                state,
                "final",
                iterations=ctx.config.post_iterations * self.post_factor,
                extra_loss=self.extra_loss(ctx),
            ).state
        return {"final": state}

    def state_dict(self) -> dict[str, Any]:
        return {"global": self.global_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.global_state = state["global"]


class FedAvgFineTuned(FedAvg):
    name = "fedavg_ft"
    post_factor = 1


class FedAvgFineTunedTwice(FedAvg):
    """Ablation: as much extra compute after FL as TAP's teacher plus student."""

    name = "fedavg_ft2x"
    post_factor = 2
