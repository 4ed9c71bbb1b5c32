"""The hooks an algorithm plugs into the shared training loop (see ``tap_engine.runner``).

An algorithm decides which state a sampled client trains, what happens after local
training, how the server aggregates, and which models are evaluated. The loop does the
rest: sampling, local training, evaluation, checkpoints and events.
"""

from __future__ import annotations

from typing import Any

from tap_engine.data import ClientData
from tap_engine.events import ModelKind
from tap_engine.model import State, sub_state


class Algorithm:
    name: str = ""
    trains: ModelKind = "global"  # which model local training updates (for loss events)

    def __init__(self, initial: State, clients: list[ClientData], components: list[list[str]]):
        self.clients = clients
        self.components = components  # per client: the component prefixes it holds

    def train_state(self, client: int) -> State:
        """The state client ``client`` starts local training from this round."""
        raise NotImplementedError

    def after_local(self, client: int, trained: State, losses: dict[str, float]) -> None:
        """Take the result of a client's local training."""

    def end_round(self) -> None:
        """Server side, after every participant has trained."""

    def eval_states(self, client: int) -> dict[ModelKind, State]:
        """The models of ``client`` to evaluate, by kind."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError


class GlobalModelMixin:
    """Keeps the server's global state and a client's view of it."""

    global_state: State
    components: list[list[str]]

    def global_sub_state(self, client: int) -> State:
        return sub_state(self.global_state, self.components[client])
