"""FedAvg: clients train the global sub-model; the server averages by dataset size."""

from __future__ import annotations

from typing import Any

from tap_engine.aggregation import weighted_average
from tap_engine.algorithms.base import Algorithm, GlobalModelMixin
from tap_engine.data import ClientData
from tap_engine.events import ModelKind
from tap_engine.model import State


class FedAvg(GlobalModelMixin, Algorithm):
    name = "fedavg"
    trains: ModelKind = "global"

    def __init__(self, initial: State, clients: list[ClientData], components: list[list[str]]):
        super().__init__(initial, clients, components)
        self.global_state = dict(initial)
        self.uploads: list[tuple[State, int]] = []

    def train_state(self, client: int) -> State:
        return self.global_sub_state(client)

    def after_local(self, client: int, trained: State, losses: dict[str, float]) -> None:
        self.uploads.append((trained, self.clients[client].n_train))

    def end_round(self) -> None:
        self.global_state = weighted_average(self.global_state, self.uploads)
        self.uploads = []

    def eval_states(self, client: int) -> dict[ModelKind, State]:
        return {"global": self.global_sub_state(client)}

    def state_dict(self) -> dict[str, Any]:
        return {"global": self.global_state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.global_state = state["global"]
