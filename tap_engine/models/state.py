"""Trainable state: what clients hold, the server aggregates and checkpoints store.

A state maps parameter names to tensors. Components are name prefixes (``heads.task``,
``mote_experts.0.image.shared``); a client's sub-model is the union of its tasks'.

States are values: nothing mutates a state's tensors in place (training copies a state
into the model and clones the result out, aggregation builds new tensors), so a view that
shares tensors with another state is as good as a copy and costs no memory.
"""

from __future__ import annotations

import torch
from torch import nn

State = dict[str, torch.Tensor]


def component_of(name: str, components: list[str]) -> str | None:
    return next((c for c in components if name == c or name.startswith(c + ".")), None)


def in_components(name: str, components: set[str] | frozenset[str]) -> bool:
    """``component_of(name, ...) is not None`` in O(depth of name): a component is a dotted
    prefix of the name (or the name itself)."""
    parts = name.split(".")
    return any(".".join(parts[:i]) in components for i in range(1, len(parts) + 1))


def names_in(names, components: list[str]) -> list[str]:
    """The names (in their order) that belong to ``components``."""
    wanted = frozenset(components)
    return [n for n in names if in_components(n, wanted)]


def sub_state(state: State, components: list[str]) -> State:
    """The tensors of ``state`` that belong to ``components`` (cloned: callers own them)."""
    return {k: state[k].detach().clone() for k in names_in(state, components)}


def sub_view(state: State, names: list[str]) -> State:
    """The named tensors of ``state``, shared, not copied (states are never mutated)."""
    return {k: state[k] for k in names}


def trainable_state(model: nn.Module) -> State:
    return {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}


def trainable_names(model: nn.Module, components: list[str]) -> list[str]:
    trainable = (k for k, p in model.named_parameters() if p.requires_grad)
    return names_in(trainable, components)


def load_sub_state(model: nn.Module, state: State, components: list[str]) -> None:
    """Load exactly the trainable parameters of ``components``: a missing or an extra tensor
    is an error (a client must carry exactly the server's weights for what it holds)."""
    ParameterIndex(model).load(state, components)


class ParameterIndex:
    """A model's trainable parameters by name, and each component list's names, computed
    once: swapping a client's state in and out then walks a dict, not every module."""

    def __init__(self, model: nn.Module) -> None:
        self.params: dict[str, nn.Parameter] = {
            k: p for k, p in model.named_parameters() if p.requires_grad
        }
        self._names: dict[tuple[str, ...], list[str]] = {}

    def names(self, components: list[str]) -> list[str]:
        key = tuple(components)
        if key not in self._names:
            self._names[key] = names_in(self.params, components)
        return self._names[key]

    def load(self, state: State, components: list[str]) -> None:
        """Strict, as ``load_sub_state``."""
        expected = self.names(components)
        if len(state) != len(expected) or not all(k in state for k in expected):
            missing = sorted(set(expected) - set(state))
            extra = sorted(set(state) - set(expected))
            raise KeyError(
                f"sub-model state mismatch: missing {missing[:3]}, unexpected {extra[:3]}"
            )
        with torch.no_grad():
            for k in expected:
                self.params[k].copy_(state[k])

    def read(self, components: list[str]) -> State:
        """The model's current values of ``components``, cloned."""
        return {k: self.params[k].detach().clone() for k in self.names(components)}


def count(state: State) -> int:
    return sum(t.numel() for t in state.values())


def nbytes(state: State) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())
