"""Modality-task pairs of a scenario, and its variants that keep only the first M of them.

A pair is a task's input modalities with its family, written ``MODALITIES:FAMILY``
(``image:image_classification``, ``image+text:text_generation``). The paper's convergence
bound grows with the number of pairs a federation holds; the ``pairs`` setting of a run
(``RunConfig.pairs``) derives a variant of its scenario with only the first M pairs, in the
scenario's ``pairs_order`` (or the order the pairs first appear in), to test that.

How a variant is built (docs/STUDIES.md says the same):

* every task whose pair is not among the first M is dropped; the kept tasks are unchanged
  (same data, shards, labels, caps, heads);
* a client left with no task takes a copy of the kept tasks of a donor client (the clients
  that kept a task, in turn), so the number of clients, the clients per round and the data
  per client stay comparable across variants (the copy sees the same samples as its donor);
* datasets, rounds, local steps and every other setting stay as they are.

This module imports nothing of the config, which calls it while it validates.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tap_engine.config import ClientSpec, ScenarioSpec, TaskSpec

PAIR_PATTERN = re.compile(r"^(image|text)(\+(image|text))?:[a-z_]+$")


def task_pair(task: TaskSpec) -> str:
    """``image+text:text_generation`` for a VQA task (modalities sorted, as in the config)."""
    return f"{'+'.join(task.input_modalities)}:{task.family}"


def present_pairs(clients: Sequence[ClientSpec]) -> list[str]:
    """The pairs the clients' tasks hold, in the order they first appear."""
    return list(dict.fromkeys(task_pair(t) for c in clients for t in c.tasks))


def scenario_pairs(scenario: ScenarioSpec) -> list[str]:
    """The scenario's pairs in their study order: those of ``pairs_order`` that the
    scenario holds, then any it does not list, in the order they first appear in."""
    present = present_pairs(scenario.clients)
    if scenario.pairs_order is None:
        return present
    listed = [pair for pair in scenario.pairs_order if pair in present]
    return listed + [pair for pair in present if pair not in listed]


def keep_pairs(scenario: ScenarioSpec, count: int) -> ScenarioSpec:
    """A copy of ``scenario`` that holds only its first ``count`` pairs (see the module
    doc); ``count`` at least the number of pairs gives an equal copy."""
    order = scenario_pairs(scenario)
    if count < 1:
        raise ValueError(f"pairs must be at least 1, got {count}")
    kept = set(order[:count])
    variant = scenario.model_copy(deep=True)
    for client in variant.clients:
        client.tasks = [t for t in client.tasks if task_pair(t) in kept]
    donors = [c for c in variant.clients if c.tasks]
    emptied = [c for c in variant.clients if not c.tasks]
    for k, client in enumerate(emptied):
        client.tasks = copy.deepcopy(donors[k % len(donors)].tasks)
    return variant
