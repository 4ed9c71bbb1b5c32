"""TAP's own rules (TAP_SPEC sections 3, 4 and 8), each pinned by a test that fails without it."""

from __future__ import annotations

import math

import pytest
import torch

from tap_engine.algorithms import algorithm_class
from tap_engine.algorithms.tap import Tap
from tap_engine.events import Replacement
from tap_engine.extra_losses import distillation
from tap_engine.models.state import load_sub_state, sub_state, trainable_names
from tap_engine.training import LocalResult
from tests.engine.conftest import Engine, build_engine


def _all_state(engine: Engine):
    return engine.initial_state()


def test_after_aggregation_a_client_sub_model_carries_exactly_the_servers_tensors(engine):
    fedavg = algorithm_class("fedavg")(
        _all_state(engine), engine.components, [c.n_train for c in engine.clients]
    )
    ctx = engine.context()
    for client in (0, 4, 5):
        fedavg.client_turn(ctx, client)
    fedavg.end_round()
    for client in range(len(engine.clients)):
        view = fedavg.global_sub_state(client)
        assert set(view) == set(trainable_names(engine.model, engine.components[client]))
        load_sub_state(engine.model, view, engine.components[client])
        params = dict(engine.model.named_parameters())
        for name in view:
            assert torch.equal(params[name], fedavg.global_state[name]), name


def test_loading_a_sub_model_is_strict(engine):
    state = sub_state(_all_state(engine), engine.components[0])
    missing = dict(state)
    missing.pop(next(iter(missing)))
    with pytest.raises(KeyError, match="missing"):
        load_sub_state(engine.model, missing, engine.components[0])
    extra = {**state, "heads.digits_image_generation.fc.weight": torch.zeros(1)}
    with pytest.raises(KeyError, match="unexpected"):
        load_sub_state(engine.model, extra, engine.components[0])


class ScriptedContext:
    """A fake Context: local training returns a scripted comparison loss and a perturbed
    state, and records the personalized state it was handed (unit tests may use fakes).
    The per-sample means it reports are deliberately different numbers: the rule must
    compare the paper's share-weighted losses, not them."""

    def __init__(self, engine: Engine, global_losses: dict[str, float]):
        self.engine, self.global_losses = engine, global_losses
        self.events: list = []
        self.personal_seen = None
        self.round = 1
        self.real = engine.context()

    def train(self, client, state, kind, *, extra_loss=None, reshuffle=False):
        if kind == "personal":
            self.personal_seen = {k: v.clone() for k, v in state.items()}
            nine = {t: 9.0 for t in self.global_losses}
            return LocalResult(state, {t: 0.0 for t in nine}, 1, comparison_losses=nine)
        trained = {k: v + 1.0 for k, v in state.items()}  # every tensor visibly changed
        means = {t: 100.0 for t in self.global_losses}
        return LocalResult(trained, means, 1, comparison_losses=dict(self.global_losses))

    def emit(self, event):
        self.events.append(event)

    def margin(self, task):
        return self.real.margin(task)

    def task_names(self, task):
        return self.real.task_names(task)


@pytest.mark.parametrize(
    ("personal_loss", "global_loss", "replaced"),
    [
        (math.inf, 5.0, True),  # first participation always adopts
        (1.0, 0.98, True),  # 0.98 + 0.01 < 1.0
        (1.0, 0.99, False),  # 0.99 + 0.01 == 1.0: not strictly better
        (1.0, 0.995, False),
    ],
)
def test_replacement_iff_global_plus_margin_beats_personal(
    engine, personal_loss, global_loss, replaced
):
    client, task = 2, "digits_image_classification"  # client 2 also holds image generation
    tap = Tap(_all_state(engine), engine.components, [c.n_train for c in engine.clients])
    tap.personal_loss[client] = {task: personal_loss, "digits_image_generation": 0.0}
    before = {k: v.clone() for k, v in tap.personal[client].items()}
    ctx = ScriptedContext(engine, {task: global_loss, "digits_image_generation": 5.0})
    assert ctx.margin(task) == 0.01  # FLAVA's image classification margin
    tap.client_turn(ctx, client)

    copied_names = set(ctx.task_names(task))
    events = [e for e in ctx.events if isinstance(e, Replacement)]
    assert [e.task for e in events] == ([task] if replaced else [])
    seen = ctx.personal_seen
    for name, tensor in seen.items():
        if replaced and name in copied_names:
            assert torch.equal(tensor, before[name] + 1.0), name  # from the trained global model
        else:
            assert torch.equal(tensor, before[name]), name  # bit-identical
    if replaced:
        (event,) = events
        assert event.parameters_copied == sum(before[n].numel() for n in copied_names)
        assert (event.global_loss, event.personal_loss, event.margin) == (
            global_loss,
            personal_loss,
            0.01,
        )
        # the image-generation head is not the classification task's: never copied with it
        assert not any(n.startswith("heads.digits_image_generation") for n in copied_names)
        assert any(n.startswith("heads.digits_image_classification") for n in copied_names)


def test_zero_lambda_distillation_is_exactly_plain_fine_tuning(engine):
    client = engine.clients[4]
    state = sub_state(_all_state(engine), engine.components[4])
    teacher = {k: v + 0.01 * torch.randn_like(v) for k, v in state.items()}

    def tune(extra_loss):
        return engine.trainer.train(
            client.tasks,
            engine.components[4],
            state,
            steps=3,
            lr=1e-3,
            seed=5,
            extra_loss=extra_loss,
        )

    plain = tune(None)
    no_kd = tune(distillation(teacher, 0.0, 500.0, target_only=False))
    assert all(torch.equal(plain.state[k], no_kd.state[k]) for k in plain.state)
    with_kd = tune(distillation(teacher, 2e-3, 500.0, target_only=False))
    assert with_kd.extra_losses["kd"] > 0  # reported
    assert any(not torch.equal(plain.state[k], with_kd.state[k]) for k in plain.state)


def test_frozen_backbone_tensors_exist_once_however_many_clients():
    from tap_engine.runner import unique_frozen_parameters

    small = build_engine(**{"scenario.clients": _clients(2), "clients_per_round": 2})
    large = build_engine(**{"scenario.clients": _clients(12), "clients_per_round": 2})
    assert unique_frozen_parameters(small.model) == unique_frozen_parameters(large.model)
    # every MoTE/MoME block and expert shares the backbone layer's frozen weights
    model = large.model
    blocks = [b.layers[0].attn.attention.key.weight for b in model.mote_blocks.values()]
    assert len({t.data_ptr() for t in blocks}) == 1
    experts = [
        e.fc1.base_layer.weight for row in model.mote_experts[0].values() for e in row.values()
    ]
    assert len({t.data_ptr() for t in experts}) == 1


def _clients(n: int) -> list[dict]:
    task = {
        "task": "digits_image_classification",
        "family": "image_classification",
        "dataset": "digits",
    }
    return [{"tasks": [{**task, "shards": [[i, n]]}]} for i in range(n)]


@pytest.mark.parametrize("replaced", [False, True])
def test_the_personal_model_sees_the_rounds_data_order_unless_something_was_replaced(
    engine, monkeypatch, replaced
):
    """As in the paper's code (and TAP_SPEC section 3): the personalized model trains on the
    global model's batches of the round, and on another order after a replacement."""
    seeds: dict[str, int] = {}
    real_train = engine.trainer.train

    def train(tasks, components, state, **kwargs):
        seeds["personal" if "global" in seeds else "global"] = kwargs["seed"]
        return real_train(tasks, components, state, **kwargs)

    monkeypatch.setattr(engine.trainer, "train", train)
    client = 0
    tap = Tap(_all_state(engine), engine.components, [c.n_train for c in engine.clients])
    task = engine.clients[client].tasks[0].name
    # -inf: the global model can never beat it; +inf (the start): it always does
    tap.personal_loss[client] = {task: math.inf if replaced else -math.inf}
    ctx = engine.context()
    before = len(engine.events)
    tap.client_turn(ctx, client)
    assert any(isinstance(e, Replacement) for e in engine.events[before:]) == replaced
    assert (seeds["personal"] == seeds["global"]) == (not replaced)
