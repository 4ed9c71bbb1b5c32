"""Synthetic scenarios for the scaling study: a preset's clients replicated to N clients.

Client ``i`` takes the tasks of the preset's client ``i mod T`` (T templates), and each
template's share is split once more among its replicas, so the data in the run stays the
preset's however many clients there are: what grows with N is the engine's per-client cost.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from tap_engine.config import RunConfig, load_preset, resolve_config


def replicated_clients(templates: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    replicas = math.ceil(n / len(templates))
    clients = []
    for i in range(n):
        client = copy.deepcopy(templates[i % len(templates)])
        for task in client["tasks"]:
            for part in task.get("parts") or [task]:
                part["shards"] = [*part.get("shards", []), [i // len(templates), replicas]]
        clients.append(client)
    return clients


def scaled_config(
    preset: str, algorithm: str | None, overrides: dict[str, Any], n_clients: int
) -> RunConfig:
    """The preset (with overrides) with ``n_clients`` replicated clients."""
    base = resolve_config(preset, algorithm, overrides)
    templates = load_preset(preset)["scenario"]["clients"]
    templates = overrides.get("scenario.clients", templates)
    return resolve_config(
        preset,
        algorithm,
        {
            **overrides,
            "scenario.clients": replicated_clients(templates, n_clients),
            "clients_per_round": min(base.clients_per_round, n_clients),
        },
    )
