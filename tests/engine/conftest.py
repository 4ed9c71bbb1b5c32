from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from tap_engine import runner
from tap_engine.config import resolve_config
from tap_engine.context import Context
from tap_engine.models.state import State, trainable_state

# Small enough for CPU tests, large enough that every stage and event happens.
SMALL = {
    "rounds": 3,
    "clients_per_round": 3,
    "local_steps": 2,
    "batch_size": 8,
    "post_iterations": 2,
    "eval_every": 1,
    "eval_max_samples": 24,
}


@dataclass
class Engine(runner.Engine):
    """What ``run`` builds, with the events its hooks emit, for tests that drive an
    algorithm's hooks directly."""

    events: list = field(default_factory=list)

    def context(self) -> Context:
        ctx = Context(
            self.config,
            self.clients,
            self.model,
            self.trainer,
            self.components,
            self.infos,
            self.events.append,
            lambda: False,
        )
        ctx.round = 1
        return ctx

    def initial_state(self) -> State:
        return trainable_state(self.model)


def build_engine(preset: str = "demo", algorithm: str = "tap", **overrides) -> Engine:
    """The runner's engine of a small config, on the CPU so that tests are deterministic."""
    config = resolve_config(preset, algorithm, {"device": "cpu", **SMALL, **overrides})
    return Engine(**vars(runner.build_engine(config)))


@pytest.fixture(scope="module")
def engine() -> Engine:
    return build_engine()


@pytest.fixture
def fresh_hub(monkeypatch):
    """A process that has not probed the hub yet, with offline mode off; whatever offline
    mode a test switches on is undone afterwards."""
    import datasets.config
    import huggingface_hub.constants

    from tap_engine import hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    hub.hub_reachable.cache_clear()
    yield hub
    hub.hub_reachable.cache_clear()
