"""The hooks an algorithm plugs into the shared training loop (``tap_engine.runner``).

An algorithm decides what a sampled client trains in a round, how the server aggregates,
which models are evaluated, and what happens after FL (stage 2). The loop owns sampling,
local training, evaluation, checkpoints and events; ``Context`` is its handle for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tap_engine.client_states import Storage
from tap_engine.events import ModelKind
from tap_engine.models.state import State, names_in, sub_view

if TYPE_CHECKING:
    from tap_engine.context import Context


class Algorithm:
    name: str = ""
    trainings_per_turn: int = 1  # local trainings per sampled client per round
    post_trainings: int = 0  # stage-2 trainings per client

    def __init__(
        self,
        initial: State,
        components: list[list[str]],
        n_train: list[int],
        storage: Storage | None = None,  # where per-client states may go, if kept
    ):
        self.components = components  # per client: the component prefixes it holds
        self.n_train = n_train  # per client: training examples (aggregation weights)

    def client_turn(self, ctx: Context, client: int) -> None:
        """A sampled client's part of the current round."""
        raise NotImplementedError

    def end_round(self) -> None:
        """Server side, after every participant has trained."""

    def eval_states(self, client: int) -> dict[ModelKind, State]:
        """The models of ``client`` evaluated during FL, by kind."""
        raise NotImplementedError

    def post_fl(self, ctx: Context, client: int) -> dict[ModelKind, State]:
        """Stage 2 for one client; the models evaluated after it. ``final`` is the model
        the algorithm delivers; others (TAP's teacher, say) are reported beside it."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError


class GlobalModel:
    """The server's global state and a client's view of it."""

    global_state: State
    components: list[list[str]]
    _client_names: dict[int, list[str]]  # per client: the names it holds, found once

    def global_sub_state(self, client: int) -> State:
        """What the server sends ``client``: a view of the global tensors it holds (states are
        never mutated in place, so no copy is needed until training copies it in)."""
        if client not in self._client_names:
            self._client_names[client] = names_in(self.global_state, self.components[client])
        return sub_view(self.global_state, self._client_names[client])
