"""Local training only: each client trains its own copy when sampled; nothing is shared."""

from __future__ import annotations

from typing import Any

from tap_engine.algorithms.base import Algorithm
from tap_engine.data import ClientData
from tap_engine.events import ModelKind
from tap_engine.model import State, sub_state


class Local(Algorithm):
    name = "local"
    trains: ModelKind = "personal"

    def __init__(self, initial: State, clients: list[ClientData], components: list[list[str]]):
        super().__init__(initial, clients, components)
        self.personal = [sub_state(initial, comps) for comps in components]

    def train_state(self, client: int) -> State:
        return self.personal[client]

    def after_local(self, client: int, trained: State, losses: dict[str, float]) -> None:
        self.personal[client] = trained

    def eval_states(self, client: int) -> dict[ModelKind, State]:
        return {"personal": self.personal[client]}

    def state_dict(self) -> dict[str, Any]:
        return {"personal": self.personal}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.personal = state["personal"]
