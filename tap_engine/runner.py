"""The shared federated training loop: ``run(config, observer, workdir, should_stop)``.

Algorithms plug in through the hooks of ``tap_engine.algorithms.base.Algorithm``; this
module owns sampling, local training, evaluation, checkpoints and events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tap_engine.algorithms import REGISTRY
from tap_engine.checkpoint import (
    config_fingerprint,
    latest_checkpoint,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from tap_engine.config import RunConfig
from tap_engine.data import ClientData, Pool, build_clients, pooled_test
from tap_engine.evaluation import evaluate_task
from tap_engine.events import (
    ClientInfo,
    Evaluation,
    LocalTraining,
    Observer,
    Progress,
    RoundStarted,
    RunFinished,
    RunStarted,
    Split,
)
from tap_engine.model import (
    TaskHeadSpec,
    build_server_model,
    load_sub_state,
    task_components,
    trainable_state,
)
from tap_engine.training import Cancelled, local_train


@dataclass
class RunResult:
    status: str  # "succeeded" or "cancelled"
    rounds_completed: int
    elapsed_s: float


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: 'cuda' was asked for, but no CUDA device is available")
    return torch.device(name)


def learning_rate(config: RunConfig, round_index: int) -> float:
    """Linear warm-up from min_lr to peak_lr over ``warmup_rounds``, then constant."""
    if config.warmup_rounds == 0:
        return config.peak_lr
    ramp = min(1.0, round_index / config.warmup_rounds)
    return config.min_lr + (config.peak_lr - config.min_lr) * ramp


def sample_clients(config: RunConfig, round_index: int) -> list[int]:
    rng = np.random.default_rng([config.seed, round_index])
    chosen = rng.choice(len(config.scenario.clients), config.clients_per_round, replace=False)
    return sorted(int(c) for c in chosen)


def client_components(client: ClientData) -> list[str]:
    return list(dict.fromkeys(c for task in client.tasks for c in task_components(task.spec)))


def run(
    config: RunConfig,
    observer: Observer,
    workdir: Path,
    should_stop: Callable[[], bool] = lambda: False,
) -> RunResult:
    """Run one experiment; resume from the newest checkpoint in ``workdir`` if there is one.

    Deterministic on CPU for a given seed: every random draw is seeded from
    (seed, round, client), so a resumed run ends where an uninterrupted one does.
    """
    started = time.monotonic()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    torch.use_deterministic_algorithms(device.type == "cpu", warn_only=True)

    clients = build_clients(config)
    pooled = pooled_test(clients)
    heads = {
        t.name: TaskHeadSpec(t.name, t.spec.family, t.num_classes) for c in clients for t in c.tasks
    }
    torch.manual_seed(config.seed)
    model = build_server_model(config, list(heads.values())).to(device)
    components = [client_components(c) for c in clients]
    algorithm = REGISTRY[config.algorithm](trainable_state(model), clients, components)

    fingerprint = config_fingerprint(config)
    start_round = 0
    checkpoint = latest_checkpoint(workdir)
    if checkpoint is not None:
        if checkpoint["fingerprint"] != fingerprint:
            raise ValueError(
                f"{workdir} holds a checkpoint of a different config; use a new workdir"
            )
        algorithm.load_state_dict(checkpoint["algorithm"])
        restore_rng_states(checkpoint["rng"])
        start_round = checkpoint["completed_rounds"]

    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    observer(
        RunStarted(
            algorithm=config.algorithm,
            seed=config.seed,
            total_rounds=config.rounds,
            resumed_from_round=start_round,
            clients=[
                ClientInfo(
                    client=c.client,
                    tasks=[t.name for t in c.tasks],
                    modalities=sorted({m for t in c.tasks for m in t.spec.modalities}),
                    n_train=c.n_train,
                    n_test=sum(len(t.test) for t in c.tasks),
                )
                for c in clients
            ],
            trainable_parameters=n_trainable,
            frozen_parameters=n_params - n_trainable,
        )
    )

    trainings_total = config.rounds * config.clients_per_round
    trainings_done = 0
    completed = start_round
    try:
        for r in range(start_round, config.rounds):
            round_no = r + 1
            participants = sample_clients(config, r)
            lr = learning_rate(config, r)
            observer(RoundStarted(round=round_no, participants=participants, lr=lr))
            for i, c in enumerate(participants):
                result = local_train(
                    model,
                    components[c],
                    algorithm.train_state(c),
                    clients[c].tasks,
                    steps=config.local_steps,
                    batch_size=config.batch_size,
                    grad_accum=config.grad_accum,
                    lr=lr,
                    weight_decay=config.weight_decay,
                    grad_clip=config.grad_clip,
                    seed=config.seed * 1_000_003 + r * 1_009 + c,
                    device=device,
                    should_stop=should_stop,
                )
                observer(
                    LocalTraining(
                        round=round_no,
                        client=c,
                        model=algorithm.trains,
                        steps=result.steps,
                        losses=result.losses,
                    )
                )
                algorithm.after_local(c, result.state, result.losses)
                trainings_done += 1
                position = r * config.clients_per_round + i + 1
                elapsed = time.monotonic() - started
                observer(
                    Progress(
                        stage="fl",
                        round=round_no,
                        total_rounds=config.rounds,
                        fraction=position / trainings_total,
                        elapsed_s=elapsed,
                        # time per local training in this process, times those left
                        eta_s=elapsed / trainings_done * (trainings_total - position),
                    )
                )
            algorithm.end_round()
            if round_no % config.eval_every == 0 or round_no == config.rounds:
                _evaluate_all(
                    model,
                    algorithm,
                    clients,
                    components,
                    pooled,
                    config,
                    device,
                    round_no,
                    observer,
                )
            completed = round_no
            save_checkpoint(
                workdir,
                completed,
                {
                    "fingerprint": fingerprint,
                    "algorithm": algorithm.state_dict(),
                    "rng": rng_states(),
                },
            )
    except Cancelled:
        elapsed = time.monotonic() - started
        observer(RunFinished(status="cancelled", rounds_completed=completed, elapsed_s=elapsed))
        return RunResult("cancelled", completed, elapsed)

    elapsed = time.monotonic() - started
    observer(RunFinished(status="succeeded", rounds_completed=completed, elapsed_s=elapsed))
    return RunResult("succeeded", completed, elapsed)


def _evaluate_all(
    model: torch.nn.Module,
    algorithm,
    clients: list[ClientData],
    components: list[list[str]],
    pooled: dict[str, Pool],
    config: RunConfig,
    device: torch.device,
    round_no: int,
    observer: Observer,
) -> None:
    """Every client's models on its own test data (local) and on the task's pooled test data."""
    for client in clients:
        for kind, state in algorithm.eval_states(client.client).items():
            load_sub_state(model, state, components[client.client])
            for task in client.tasks:
                splits: dict[Split, Pool] = {"local": task.test, "pooled": pooled[task.name]}
                for split, pool in splits.items():
                    metrics = evaluate_task(
                        model, task.name, task.spec.family, pool, config.eval_batch_size, device
                    )
                    for metric, value in metrics.items():
                        observer(
                            Evaluation(
                                round=round_no,
                                stage="fl",
                                client=client.client,
                                task=task.name,
                                model=kind,
                                split=split,
                                metric=metric,
                                value=value,
                                n=len(pool),
                            )
                        )
