"""Local training only: each client trains its own copy when sampled; nothing is shared."""

from __future__ import annotations

from typing import Any

from tap_engine.algorithms.base import Algorithm
from tap_engine.client_states import ClientStates, Storage
from tap_engine.context import Context
from tap_engine.events import ModelKind
from tap_engine.models.state import State


class Local(Algorithm):
    name = "local"

    def __init__(
        self,
        initial: State,
        components: list[list[str]],
        n_train: list[int],
        storage: Storage | None = None,
    ):
        super().__init__(initial, components, n_train, storage)
        self.personal = ClientStates(initial, components, storage)

    def client_turn(self, ctx: Context, client: int) -> None:
        self.personal[client] = ctx.train(client, self.personal[client], "personal").state

    def eval_states(self, client: int) -> dict[ModelKind, State]:
        return {"personal": self.personal[client]}

    def post_fl(self, ctx: Context, client: int) -> dict[ModelKind, State]:
        return {"final": self.personal[client]}

    def state_dict(self) -> dict[str, Any]:
        return {"personal": self.personal.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.personal.load_state_dict(state["personal"])
