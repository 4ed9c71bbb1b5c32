"""The step floor against the engine's step: one client, one process, interleaved repeats.

The floor is what any implementation has to compute for one optimizer step of a client:
forward and backward over the step's micro-batches, already on the device, then gradient
clipping and AdamW. The engine's step is ``LocalTrainer.train`` divided by its steps: it
adds swapping the client's state in and out, building the optimizer, drawing and
assembling batches from the tensorised pools, and loss bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tap_engine.bench.measure import median, timed
from tap_engine.data import Batch
from tap_engine.models.tap_model import TaskInfo
from tap_engine.runner import Engine
from tap_engine.training import task_loss

MicroBatch = list[tuple[TaskInfo, Batch, float]]  # per task: info, batch, share of the batch


@dataclass
class StepFigures:
    client: int
    tasks: list[str]
    trainable_parameters: int
    batch_size: int
    grad_accum: int
    steps: int  # optimizer steps per timed repeat (the config's local_steps)
    repeats: int
    forward_backward_s: float  # median seconds per step
    bare_step_s: float
    engine_step_s: float
    overhead: float  # median over repeats of engine / bare, measured back to back
    overhead_vs_forward_backward: float


def _micro_batches(
    engine: Engine, client: int, target_width: int | None = None, seed: int = 0
) -> list[MicroBatch]:
    """The step's micro-batches, drawn as the trainer draws them, built once (text targets
    padded to ``target_width`` as stage 2's distillation over every position pads them)."""
    config, tasks = engine.config, engine.clients[client].tasks
    sizes = [len(t.train) for t in tasks]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    order = torch.randperm(sum(sizes), generator=torch.Generator().manual_seed(seed))
    out = []
    for a in range(config.grad_accum):
        index = order.roll(-a * config.batch_size)[: config.batch_size]
        parts = []
        for task, size, offset in zip(tasks, sizes, offsets, strict=True):
            rows = index[(index >= offset) & (index < offset + size)] - offset
            if rows.numel():
                batch = task.train.batch(rows, engine.device, target_width)
                parts.append((engine.infos[task.name], batch, len(rows) / len(index)))
        out.append(parts)
    return out


class BareStep:
    """Forward, backward, clipping and AdamW on fixed batches: nothing else."""

    def __init__(
        self,
        engine: Engine,
        client: int,
        lr: float,
        target_width: int | None = None,
        seed: int = 0,
    ) -> None:
        self.engine, self.micro = engine, _micro_batches(engine, client, target_width, seed)
        trainer, components = engine.trainer, engine.components[client]
        self.params = [trainer.params.params[n] for n in trainer.params.names(components)]
        on_cuda = engine.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(
            self.params,
            lr=lr,
            weight_decay=engine.config.weight_decay,
            fused=on_cuda,
            foreach=None if on_cuda else True,
        )

    def __call__(self, optimizer_step: bool = True) -> None:
        model, trainer = self.engine.model, self.engine.trainer
        model.train()
        self.optimizer.zero_grad(set_to_none=True)
        for parts in self.micro:
            with trainer.autocast():
                total = torch.zeros((), device=self.engine.device)
                for info, batch, share in parts:
                    prediction = model(info, batch).prediction
                    total = total + task_loss(info.family, prediction, batch) * share
            (total / len(self.micro)).backward()
        if optimizer_step:
            nn.utils.clip_grad_norm_(self.params, self.engine.config.grad_clip, foreach=True)
            self.optimizer.step()

    @torch.no_grad()
    def forward_only(self) -> None:
        """A teacher's pass over the same micro-batches: eval mode, no gradient."""
        model = self.engine.model
        model.eval()
        for parts in self.micro:
            with self.engine.trainer.autocast():
                for info, batch, _ in parts:
                    model(info, batch)


def measure_steps(engine: Engine, client: int, steps: int, repeats: int) -> StepFigures:
    config, trainer, device = engine.config, engine.trainer, engine.device
    tasks, components = engine.clients[client].tasks, engine.components[client]
    assert config.min_lr is not None
    state = trainer.params.read(components)  # the client's state at the model's init
    lr = config.min_lr

    trainer.params.load(state, components)
    bare = BareStep(engine, client, lr)

    def bare_steps(optimizer_step: bool) -> None:
        for _ in range(steps):
            bare(optimizer_step)

    def engine_steps() -> None:
        trainer.train(tasks, components, state, steps=steps, lr=lr, seed=0)

    bare_steps(True), engine_steps()  # warm-up: allocator, lazy init, caches
    fb, bare_s, engine_s, ratios, ratios_fb = [], [], [], [], []
    for _ in range(repeats):  # interleaved, so slow spells of a shared machine hit all three
        trainer.params.load(state, components)
        fb.append(timed(lambda: bare_steps(False), device) / steps)
        bare_s.append(timed(lambda: bare_steps(True), device) / steps)
        engine_s.append(timed(engine_steps, device) / steps)
        ratios.append(engine_s[-1] / bare_s[-1])
        ratios_fb.append(engine_s[-1] / fb[-1])
    return StepFigures(
        client=client,
        tasks=[t.name for t in tasks],
        trainable_parameters=sum(p.numel() for p in bare.params),
        batch_size=config.batch_size,
        grad_accum=config.grad_accum,
        steps=steps,
        repeats=repeats,
        forward_backward_s=median(fb),
        bare_step_s=median(bare_s),
        engine_step_s=median(engine_s),
        overhead=median(ratios),
        overhead_vs_forward_backward=median(ratios_fb),
    )
