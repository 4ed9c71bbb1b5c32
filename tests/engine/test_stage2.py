"""Stage 2 as the paper's code computes it (TAP_SPEC section 4): the distillation term is
PyTorch's batchmean KL per task, added without the task's share of the batch, and stage 2
is counted in micro-batches with an optimizer step every grad_accum of them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tap_engine.algorithms import algorithm_class
from tap_engine.context import Context
from tap_engine.events import LocalTraining, TrainingStep
from tap_engine.extra_losses import distillation, kd_divergence
from tap_engine.models.state import sub_state
from tap_engine.training import LocalTrainer, TaskStep, _comparison_losses
from tests.engine.conftest import Engine, build_engine


def _paper_kd(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """The authors' ``knowledge_distillation_loss`` at temperature 1, verbatim."""
    soft_teacher = F.softmax(teacher, dim=-1)
    soft_student = F.log_softmax(student, dim=-1)
    return F.kl_div(soft_student, soft_teacher, reduction="batchmean", log_target=False)


@pytest.mark.parametrize(
    "shape",
    [(4, 7), (4, 6, 11), (4, 3, 8, 8)],
    ids=["class logits", "vocabulary x target positions", "image rows"],
)
def test_kd_is_the_batchmean_kl_summed_over_all_but_the_batch(shape):
    generator = torch.Generator().manual_seed(0)
    student, teacher = (torch.randn(shape, generator=generator) for _ in range(2))
    value = kd_divergence(student, teacher)
    assert torch.allclose(value, _paper_kd(student, teacher), rtol=1e-6)
    p = F.softmax(teacher, -1)
    by_hand = (p * (p.log() - F.log_softmax(student, -1))).sum() / shape[0]
    assert torch.allclose(value, by_hand, rtol=1e-5)


def test_kd_over_target_positions_only_sums_those_positions():
    generator = torch.Generator().manual_seed(1)
    student, teacher = (torch.randn(3, 5, 9, generator=generator) for _ in range(2))
    positions = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 0], [1, 0, 0, 0, 0]]).float()
    expected = (
        sum(
            _paper_kd(student[i : i + 1, : int(n)], teacher[i : i + 1, : int(n)])
            for i, n in enumerate(positions.sum(1))
        )
        / 3
    )
    assert torch.allclose(kd_divergence(student, teacher, positions), expected, rtol=1e-5)


@pytest.mark.parametrize("client", [0, 3, 4, 5, 6])
def test_the_kd_term_of_each_task_is_lambda_times_its_batchmean_kl(engine, client):
    """Image classification (0), text classification (3, 5), VQA (4, 5), image generation
    (6); client 5's two tasks share each batch, and neither term is scaled by its share."""
    data = engine.clients[client]
    names = engine.trainer.params.names(engine.components[client])
    base = sub_state(engine.initial_state(), engine.components[client])
    noise = torch.Generator().manual_seed(client)
    teacher = {k: v + 0.05 * torch.randn(v.shape, generator=noise) for k, v in base.items()}
    width = engine.config.backbone.max_target_length
    steps = []
    for task in data.tasks:
        info = engine.infos[task.name]
        batch = task.train.batch(torch.arange(6), torch.device("cpu"), width)
        engine.trainer.params.load(base, engine.components[client])
        engine.model.eval()
        with torch.no_grad():
            output = engine.model(info, batch)
        steps.append(TaskStep(task, info, batch, output, fraction=0.5))
    lam = 2e-3
    terms = distillation(
        dict(zip(names, (teacher[n] for n in names), strict=True)), lam, 500.0, target_only=False
    )(engine.model, steps)
    assert set(terms) == {("kd", t.name) for t in data.tasks}
    for step in steps:
        engine.trainer.params.load(teacher, engine.components[client])
        engine.model.eval()
        with torch.no_grad():
            target = engine.model(step.info, step.batch).prediction
        weight = lam * (500.0 if step.info.family == "text_classification" else 1.0)
        expected = weight * _paper_kd(step.output.prediction, target)
        assert torch.allclose(terms[("kd", step.task.name)], expected, rtol=1e-5), step.task.name
        if step.info.family == "text_generation":  # every position up to max_target_length
            assert step.output.prediction.shape[1] == width


def _counting_trainer(engine: Engine, grad_accum: int, monkeypatch) -> tuple[LocalTrainer, list]:
    trainer = LocalTrainer(
        engine.model, engine.infos, torch.device("cpu"), 8, grad_accum, 0.01, 1.0
    )
    calls: list[str] = []
    real_step = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        calls.append("step")
        return real_step(self, *args, **kwargs)

    real_forward = trainer._forward

    def forward(*args, **kwargs):
        calls.append("micro-batch")
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    monkeypatch.setattr(trainer, "_forward", forward)
    return trainer, calls


def test_fifty_stage_two_iterations_at_four_micro_batches_a_step_are_thirteen_steps(
    engine, monkeypatch
):
    trainer, calls = _counting_trainer(engine, 4, monkeypatch)
    ctx = engine.context()
    ctx = Context(
        ctx.config.model_copy(update={"post_iterations": 50}),
        engine.clients,
        engine.model,
        trainer,
        engine.components,
        engine.infos,
        engine.events.append,
        lambda: False,
    )
    ctx.stage, ctx.round = "post", 3
    state = sub_state(engine.initial_state(), engine.components[0])
    result = ctx.fine_tune(0, state, "global_ft")
    assert calls.count("micro-batch") == 50 and calls.count("step") == 13
    assert (result.micro_batches, result.steps) == (50, 13)
    # every micro-batch belongs to the step it ends in: 12 steps of 4, then one of 2
    assert calls.index("step") == 4 and calls[-2:] == ["micro-batch", "step"]
    recorded = [e for e in engine.events if isinstance(e, TrainingStep) and e.client == 0]
    assert [e.micro_batches for e in recorded] == [4] * 12 + [2]
    assert [e.step for e in recorded] == list(range(1, 14))


@pytest.mark.parametrize(
    ("algorithm", "models"),
    [
        ("fedavg_ft", {"final": 1}),
        ("fedavg_ft2x", {"final": 2}),
        ("tap", {"global_ft": 1, "final": 1}),
    ],
)
def test_stage_two_lengths_per_algorithm(algorithm, models, monkeypatch):
    engine = build_engine(algorithm=algorithm, post_iterations=6, grad_accum=4)
    trainer, _ = _counting_trainer(engine, 4, monkeypatch)
    algo = algorithm_class(algorithm)(
        engine.initial_state(), engine.components, [c.n_train for c in engine.clients]
    )
    ctx = Context(
        engine.config,
        engine.clients,
        engine.model,
        trainer,
        engine.components,
        engine.infos,
        engine.events.append,
        lambda: False,
    )
    ctx.stage, ctx.round = "post", 3
    algo.post_fl(ctx, 4)
    trainings = [e for e in engine.events if isinstance(e, LocalTraining)]
    assert {e.model: e.micro_batches // 6 for e in trainings} == models
    assert all(e.steps == -(-e.micro_batches // 4) for e in trainings)


def test_tap_distils_text_generation_over_every_predicted_position(engine, monkeypatch):
    """The student's batches are padded to max_target_length (the paper's code predicts
    every position); ``kd_text_positions: target`` keeps each sample's own targets."""
    real_train = engine.trainer.train
    for positions, width in (("all", engine.config.backbone.max_target_length), ("target", None)):
        config = engine.config.model_copy(update={"kd_text_positions": positions})
        seen = {}

        def train(*args, seen=seen, **kwargs):
            seen[kwargs.get("extra_loss") is not None] = kwargs["target_width"]
            return real_train(*args, **kwargs)

        monkeypatch.setattr(engine.trainer, "train", train)
        ctx = Context(
            config,
            engine.clients,
            engine.model,
            engine.trainer,
            engine.components,
            engine.infos,
            engine.events.append,
            lambda: False,
        )
        ctx.stage, ctx.round = "post", 3
        tap = algorithm_class("tap")(
            engine.initial_state(), engine.components, [c.n_train for c in engine.clients]
        )
        tap.post_fl(ctx, 4)
        assert seen == {False: None, True: width}  # teacher unpadded, student as configured


def test_comparison_losses_are_share_weighted_sums_over_the_micro_batches():
    """``history[task] = sum(share * loss) / len(dataloader)``, as in the paper's code."""

    class Task:
        def __init__(self, name: str) -> None:
            self.name = name

    tasks = [Task("a"), Task("b")]
    t = torch.zeros(())
    losses = [(1, "a", t, 6, 0.75), (1, "b", t, 2, 0.25), (2, "a", t, 8, 1.0)]
    values = [2.0, 4.0, 1.0]
    assert _comparison_losses(tasks, losses, values, 2) == {
        "a": (0.75 * 2.0 + 1.0 * 1.0) / 2,
        "b": 0.25 * 4.0 / 2,
    }


def test_a_single_task_clients_comparison_loss_is_its_mean_micro_batch_loss(engine):
    client = engine.clients[0]
    state = sub_state(engine.initial_state(), engine.components[0])
    result = engine.trainer.train(
        client.tasks, engine.components[0], state, steps=4, lr=1e-3, seed=3, record_steps=True
    )
    (task,) = (t.name for t in client.tasks)
    per_step = [r.losses[task] for r in result.step_records]
    assert result.comparison_losses[task] == pytest.approx(sum(per_step) / 4)
