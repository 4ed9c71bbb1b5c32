from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from tap_engine.config import RunConfig, resolve_config
from tap_engine.context import Context
from tap_engine.data import ClientData, build_clients
from tap_engine.models.backbones import load_backbone
from tap_engine.models.state import trainable_state
from tap_engine.models.tap_model import TapModel, TaskInfo
from tap_engine.runner import client_components, task_infos
from tap_engine.training import LocalTrainer

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
class Engine:
    """The pieces ``run`` builds, for tests that drive an algorithm's hooks directly."""

    config: RunConfig
    clients: list[ClientData]
    infos: dict[str, TaskInfo]
    model: TapModel
    components: list[list[str]]
    trainer: LocalTrainer
    events: list

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

    def initial_state(self):
        return trainable_state(self.model)


def build_engine(preset: str = "demo", algorithm: str = "tap", **overrides) -> Engine:
    config = resolve_config(preset, algorithm, {**SMALL, **overrides})
    backbone = load_backbone(config.backbone)
    clients = build_clients(config, backbone.tokenizer)
    infos = task_infos(clients)
    torch.manual_seed(config.seed)
    model = TapModel(backbone, list(infos.values()), config.backbone.max_target_length)
    components = [client_components(model, c, infos) for c in clients]
    trainer = LocalTrainer(model, infos, torch.device("cpu"), config.batch_size, 1, 0.01, 1.0)
    return Engine(config, clients, infos, model, components, trainer, [])


@pytest.fixture(scope="module")
def engine() -> Engine:
    return build_engine()
