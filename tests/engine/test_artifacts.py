"""A finished run leaves each client's final personalized state as safetensors (readable
without the engine); a cancelled run leaves none."""

from __future__ import annotations

import torch
from safetensors.torch import load_file, safe_open

from tap_engine.artifacts import adapter_path
from tap_engine.config import resolve_config
from tap_engine.events import Evaluation
from tap_engine.runner import run
from tests.engine.conftest import SMALL


def test_a_finished_run_saves_each_clients_final_state(tmp_path) -> None:
    events: list = []
    config = resolve_config("demo", "tap", {**SMALL, "rounds": 2})
    result = run(config, events.append, tmp_path / "run")
    assert result.status == "succeeded"
    clients = len(config.scenario.clients)
    for client in range(clients):
        path = adapter_path(tmp_path / "run", client)
        tensors = load_file(path)
        assert tensors and all(t.device.type == "cpu" for t in tensors.values())
        with safe_open(path, "pt") as f:
            assert f.metadata() == {"client": str(client), "algorithm": "tap"}
    # personalized: the clients' final states differ where they share parameter names
    a, b = (
        load_file(adapter_path(tmp_path / "run", 0)),
        load_file(adapter_path(tmp_path / "run", 1)),
    )
    shared = set(a) & set(b)
    assert shared and any(not torch.equal(a[k], b[k]) for k in shared)
    assert any(isinstance(e, Evaluation) and e.model == "final" for e in events)


def test_a_cancelled_run_saves_no_final_state(tmp_path) -> None:
    config = resolve_config("demo", "local", {**SMALL, "rounds": 2})
    result = run(config, lambda e: None, tmp_path / "run", should_stop=lambda: True)
    assert result.status == "cancelled"
    assert not (tmp_path / "run" / "artifacts").exists()
