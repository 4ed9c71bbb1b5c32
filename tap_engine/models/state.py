"""Trainable state: what clients hold, the server aggregates and checkpoints store.

A state maps parameter names to tensors. Components are name prefixes (``heads.task``,
``mote_experts.0.image.shared``); a client's sub-model is the union of its tasks'.
"""

from __future__ import annotations

import torch
from torch import nn

State = dict[str, torch.Tensor]


def component_of(name: str, components: list[str]) -> str | None:
    return next((c for c in components if name == c or name.startswith(c + ".")), None)


def sub_state(state: State, components: list[str]) -> State:
    """The tensors of ``state`` that belong to ``components`` (cloned: callers own them)."""
    return {k: v.detach().clone() for k, v in state.items() if component_of(k, components)}


def trainable_state(model: nn.Module) -> State:
    return {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}


def trainable_names(model: nn.Module, components: list[str]) -> list[str]:
    return [
        k for k, p in model.named_parameters() if p.requires_grad and component_of(k, components)
    ]


def load_sub_state(model: nn.Module, state: State, components: list[str]) -> None:
    """Load exactly the trainable parameters of ``components``: a missing or an extra tensor
    is an error (a client must carry exactly the server's weights for what it holds)."""
    params = dict(model.named_parameters())
    expected = set(trainable_names(model, components))
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        raise KeyError(f"sub-model state mismatch: missing {missing[:3]}, unexpected {extra[:3]}")
    with torch.no_grad():
        for k, v in state.items():
            params[k].copy_(v)


def count(state: State) -> int:
    return sum(t.numel() for t in state.values())
