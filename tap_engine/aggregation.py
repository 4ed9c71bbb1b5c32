"""Server aggregation: a pure function over (state, number of examples) pairs."""

from __future__ import annotations

import torch

from tap_engine.models.state import State


def weighted_average(base: State, updates: list[tuple[State, int]]) -> State:
    """Each parameter becomes the dataset-size-weighted mean over the updates that hold it.

    Parameters no update holds keep their value in ``base``. Mismatched architectures are
    the norm here: each client uploads only the components its tasks use.
    """
    out = dict(base)
    holders: dict[str, list[tuple[torch.Tensor, int]]] = {}
    for state, n in updates:
        if n <= 0:
            raise ValueError("an update must carry a positive number of examples")
        for name, tensor in state.items():
            if name not in base:
                raise KeyError(f"update holds {name!r}, which the server model does not have")
            holders.setdefault(name, []).append((tensor, n))
    for name, pairs in holders.items():
        total = sum(n for _, n in pairs)
        mean = torch.zeros_like(base[name], dtype=torch.float64)
        for tensor, n in pairs:
            mean += tensor.to(torch.float64) * (n / total)
        out[name] = mean.to(base[name].dtype)
    return out
