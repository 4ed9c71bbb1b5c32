"""Client states in memory up to a budget, spilled to safetensors beyond it, checkpointed
incrementally; spilling never changes a result."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tap_engine.client_states import ClientStates, Storage
from tap_engine.config import resolve_config
from tap_engine.events import Evaluation, LocalTraining
from tap_engine.runner import run
from tests.engine.conftest import SMALL

INITIAL = {
    "a.w": torch.zeros(4, 4),
    "a.b": torch.zeros(4),
    "b.w": torch.zeros(8, 4),
}
COMPONENTS = [["a"], ["a", "b"], ["b"]]


def _state(store: ClientStates, client: int, value: float):
    return {k: torch.full_like(v, value) for k, v in store[client].items()}


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.safetensors")}


def test_a_client_that_never_trained_holds_a_view_of_the_initial_state():
    store = ClientStates(INITIAL, COMPONENTS)
    assert set(store[1]) == {"a.w", "a.b", "b.w"} and set(store[0]) == {"a.w", "a.b"}
    assert store[0]["a.w"] is INITIAL["a.w"]
    assert store.memory_bytes == 0


def test_beyond_the_budget_states_spill_to_disk_and_come_back_bit_identical(tmp_path):
    store = ClientStates(INITIAL, COMPONENTS, Storage(tmp_path, budget_bytes=0))
    states = {c: {k: torch.randn_like(v) for k, v in store[c].items()} for c in range(3)}
    for client, state in states.items():
        store[client] = state
    assert store.memory_bytes == sum(v.numel() * 4 for v in states[2].values())  # the newest
    assert len(_files(tmp_path)) == 2  # the two older ones were written out
    for client, state in states.items():
        assert all(torch.equal(store[client][k], v) for k, v in state.items())


def test_checkpoints_write_only_the_states_that_changed(tmp_path):
    store = ClientStates(INITIAL, COMPONENTS, Storage(tmp_path))
    store[0], store[1] = _state(store, 0, 1.0), _state(store, 1, 1.0)
    assert store.state_dict() == {"versions": [1, 1, 0]}
    first = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.safetensors")}
    store[1] = _state(store, 1, 2.0)
    assert store.state_dict() == {"versions": [1, 2, 0]}
    assert _files(tmp_path) - set(first) == {"00001-000002.safetensors"}
    kept = "00000-000001.safetensors"
    assert (tmp_path / kept).stat().st_mtime_ns == first[kept]  # not rewritten

    restored = ClientStates(INITIAL, COMPONENTS, Storage(tmp_path))
    restored.load_state_dict({"versions": [1, 2, 0]})
    assert torch.equal(restored[1]["b.w"], torch.full((8, 4), 2.0))
    assert restored[2]["b.w"] is INITIAL["b.w"]


def test_versions_no_kept_checkpoint_names_are_deleted(tmp_path):
    store = ClientStates(INITIAL, COMPONENTS, Storage(tmp_path))
    for value in range(1, 6):
        store[0] = _state(store, 0, float(value))
        store.state_dict()
    assert _files(tmp_path) == {f"00000-{v:06d}.safetensors" for v in (3, 4, 5)}


def test_a_checkpoint_of_states_in_memory_loads_too():
    store = ClientStates(INITIAL, COMPONENTS)
    store[2] = _state(store, 2, 3.0)
    saved = store.state_dict()
    restored = ClientStates(INITIAL, COMPONENTS)
    restored.load_state_dict(saved["states"])  # the engine's earlier format: a plain list
    assert torch.equal(restored[2]["b.w"], torch.full((8, 4), 3.0))


def _finals(events):
    return {
        (e.stage, e.round, e.client, e.task, e.model, e.split, e.metric): e.value
        for e in events
        if isinstance(e, Evaluation)
    }


@pytest.mark.slow
def test_spilling_every_state_and_resuming_changes_no_result(tmp_path):
    overrides = {**SMALL, "rounds": 2, "local_steps": 1, "eval_max_samples": 8}
    config = resolve_config("demo", "tap", overrides)
    in_memory: list = []
    run(config, in_memory.append, tmp_path / "memory")

    first: list = []

    def stop_in_round_two() -> bool:  # after its first client's training
        return any(isinstance(e, LocalTraining) and e.round == 2 for e in first)

    result = run(
        config, first.append, tmp_path / "spilled", stop_in_round_two, state_memory_budget_mb=0
    )
    assert result.status == "cancelled" and result.rounds_completed == 1
    assert _files(tmp_path / "spilled" / "client_states")
    resumed: list = []
    resumed_run = run(config, resumed.append, tmp_path / "spilled", state_memory_budget_mb=0)
    assert resumed_run.status == "succeeded"
    assert _finals(first) | _finals(resumed) == _finals(in_memory)
