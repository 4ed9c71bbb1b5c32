"""The shared federated loop: ``run(config, observer, workdir, should_stop, cache_dir=...,
state_memory_budget_mb=...)``.

Algorithms plug in through ``tap_engine.algorithms.base.Algorithm``; this module owns
building the model and data, client sampling, evaluation, stage 2, checkpoints and events.
Everything a run depends on besides its config comes in as an argument: the engine reads
no environment variable of its own.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from tap_engine.algorithms import algorithm_class
from tap_engine.algorithms.base import Algorithm
from tap_engine.answers import most_frequent_answer
from tap_engine.artifacts import save_final_state
from tap_engine.checkpoint import (
    config_fingerprint,
    latest_checkpoint,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from tap_engine.client_states import Storage
from tap_engine.config import RunConfig
from tap_engine.context import Context, learning_rate
from tap_engine.data import (
    ClientData,
    Pool,
    TaskData,
    build_clients,
    eval_subset,
    pooled_test,
    scenario_domains,
)
from tap_engine.errors import DataError
from tap_engine.evaluation import constant_answer_metrics, evaluate_task
from tap_engine.events import (
    ClientInfo,
    Evaluation,
    MetricSkipped,
    ModelKind,
    Observer,
    Progress,
    RoundStarted,
    RunFinished,
    RunStarted,
    Split,
)
from tap_engine.models.backbones import load_backbone
from tap_engine.models.state import State, trainable_state
from tap_engine.models.tap_model import TapModel, TaskInfo
from tap_engine.text_metrics import TextScorer
from tap_engine.training import Cancelled, LocalTrainer

SPLITS: tuple[Split, ...] = ("local", "pooled")


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


def sample_clients(config: RunConfig, round_index: int) -> list[int]:
    rng = np.random.default_rng([config.seed, round_index])
    chosen = rng.choice(len(config.scenario.clients), config.clients_per_round, replace=False)
    return sorted(int(c) for c in chosen)


def task_infos(clients: list[ClientData]) -> dict[str, TaskInfo]:
    """One TaskInfo per task name; clients sharing a task share its head, and tasks that
    name the same head share that."""
    infos: dict[str, TaskInfo] = {}
    domains: dict[str, set[str]] = {}
    for client in clients:
        for task in client.tasks:
            domains.setdefault(task.name, set()).update(task.spec.domains)
            info = TaskInfo(
                task.name,
                task.spec.family,
                tuple(task.spec.input_modalities),
                (),
                task.num_classes,
                task.spec.head_name,
            )
            known = infos.setdefault(task.name, info)
            if known != info:
                raise DataError(
                    f"client {client.client}, task {task.name!r}: differs from the same task "
                    f"of another client ({known.family}, {known.modalities}, "
                    f"{known.num_classes} classes, head {known.head!r} vs {info.family}, "
                    f"{info.modalities}, {info.num_classes}, head {info.head!r})"
                )
    by_head: dict[str, TaskInfo] = {}
    for info in infos.values():
        first = by_head.setdefault(info.head_name, info)
        if first.num_classes != info.num_classes:
            raise DataError(
                f"tasks {first.name!r} and {info.name!r} share head {info.head_name!r} but "
                f"have {first.num_classes} and {info.num_classes} classes"
            )
    return {
        name: dataclasses.replace(i, domains=tuple(sorted(domains[name])))
        for name, i in infos.items()
    }


def client_components(model: TapModel, client: ClientData, infos: dict[str, TaskInfo]) -> list[str]:
    return list(
        dict.fromkeys(c for t in client.tasks for c in model.task_components(infos[t.name]))
    )


def unique_frozen_parameters(model: torch.nn.Module) -> int:
    """Frozen scalars counted once per tensor, however many modules share it."""
    seen: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        if not p.requires_grad:
            seen[p.data_ptr()] = p.numel()
    return sum(seen.values())


@dataclass
class Engine:
    """What a run builds once and keeps: the clients' tensorised data, the one model around
    the frozen backbone, and the trainer that swaps clients' trainable state in and out."""

    config: RunConfig
    device: torch.device
    clients: list[ClientData]
    infos: dict[str, TaskInfo]
    model: TapModel
    components: list[list[str]]  # per client: the components its tasks use
    trainer: LocalTrainer
    tokenizer: object

    def new_algorithm(self, storage: Storage | None = None) -> Algorithm:
        return algorithm_class(self.config.algorithm)(
            trainable_state(self.model),
            self.components,
            [c.n_train for c in self.clients],
            storage,
        )


def build_engine(config: RunConfig, cache_dir: Path | None = None) -> Engine:
    """Backbone, data and model of ``config``; tiny backbones and preprocessed data are
    kept under ``cache_dir`` (default: ``tap_engine.cache.default_cache_dir()``)."""
    device = resolve_device(config.device)
    torch.use_deterministic_algorithms(device.type == "cpu", warn_only=True)
    backbone = load_backbone(config.backbone, cache_dir)
    clients = build_clients(config, backbone.tokenizer, cache_dir)
    infos = task_infos(clients)
    torch.manual_seed(config.seed)
    model = TapModel(backbone, list(infos.values()), config.backbone.max_target_length or 1)
    # Pools index domains in the scenario's sorted domain list; the model must agree.
    assert model.domains == scenario_domains(config), (model.domains, scenario_domains(config))
    tokenizer = backbone.tokenizer
    del backbone  # what TAP does not use of the pretrained model can be freed
    model.to(device)
    if device.type == "cuda":
        place_data(clients, device)
    trainer = LocalTrainer(
        model,
        infos,
        device,
        config.batch_size,
        config.grad_accum,
        config.weight_decay,
        config.grad_clip,
        bf16=config.precision == "bf16",
    )
    components = [client_components(model, c, infos) for c in clients]
    return Engine(config, device, clients, infos, model, components, trainer, tokenizer)


def place_data(clients: list[ClientData], device: torch.device) -> None:
    """Move every client's pools to ``device`` once: a batch is then a gather on the device,
    with no host-to-device copy per step (uint8 images keep this to 12 KiB an image)."""
    for client in clients:
        for task in client.tasks:
            for pool in (task.train, task.test):
                for f in fields(pool):
                    value = getattr(pool, f.name)
                    if isinstance(value, torch.Tensor):
                        setattr(pool, f.name, value.to(device))


def storage_for(workdir: Path, state_memory_budget_mb: float | None = None) -> Storage:
    """Client states held in memory beyond ``state_memory_budget_mb`` MiB spill under the
    run's folder (None: no limit; 0: every state goes to disk)."""
    if state_memory_budget_mb is None:
        return Storage(workdir / "client_states")
    if not state_memory_budget_mb >= 0:  # also refuses NaN
        raise ValueError(
            f"state_memory_budget_mb: {state_memory_budget_mb!r} MiB; give a number >= 0 "
            "(or None for no limit)"
        )
    return Storage(workdir / "client_states", int(state_memory_budget_mb * 2**20))


def play_round(ctx: Context, algorithm: Algorithm, round_index: int) -> list[int]:
    """One FL round: sample, let each participant take its turn, aggregate."""
    ctx.round = round_index + 1
    participants = sample_clients(ctx.config, round_index)
    ctx.emit(
        RoundStarted(
            round=ctx.round, participants=participants, lr=learning_rate(ctx.config, round_index)
        )
    )
    for client in participants:
        algorithm.client_turn(ctx, client)
    algorithm.end_round()
    return participants


def write_checkpoint(workdir: Path, completed: int, fingerprint: str, algorithm: Algorithm) -> Path:
    """The round's checkpoint: the algorithm's state (client states written incrementally
    by their store), RNG states and the config's fingerprint."""
    payload = {
        "fingerprint": fingerprint,
        "algorithm": _to(algorithm.state_dict(), torch.device("cpu")),
        "rng": rng_states(),
    }
    return save_checkpoint(workdir, completed, payload)


def run(
    config: RunConfig,
    observer: Observer,
    workdir: Path,
    should_stop: Callable[[], bool] = lambda: False,
    *,
    cache_dir: Path | None = None,
    state_memory_budget_mb: float | None = None,
) -> RunResult:
    """Run one experiment; resume from the newest checkpoint in ``workdir`` if there is one.

    ``cache_dir``: where tiny backbones and preprocessed data are kept, shared by runs
    (default: ``tap_engine.cache.default_cache_dir()``). ``state_memory_budget_mb``: memory
    for per-client states before the least recently used spill under ``workdir`` (None: no
    limit).

    Deterministic on CPU for a given seed: every random draw is seeded from (seed, round,
    client, purpose), so a resumed run ends where an uninterrupted one does.
    """
    started = time.monotonic()
    workdir = Path(workdir)
    storage = storage_for(workdir, state_memory_budget_mb)  # a bad budget fails before any work
    workdir.mkdir(parents=True, exist_ok=True)
    engine = build_engine(config, cache_dir)
    device, clients, model = engine.device, engine.clients, engine.model
    algorithm = engine.new_algorithm(storage)

    fingerprint = config_fingerprint(config)
    start_round = 0
    checkpoint = latest_checkpoint(workdir)
    if checkpoint is not None:
        if checkpoint["fingerprint"] != fingerprint:
            raise ValueError(f"{workdir} holds a checkpoint of another config; use a new workdir")
        algorithm.load_state_dict(_to(checkpoint["algorithm"], device))
        restore_rng_states(checkpoint["rng"])
        start_round = checkpoint["completed_rounds"]

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    observer(
        RunStarted(
            algorithm=config.algorithm,
            seed=config.seed,
            total_rounds=config.rounds,
            resumed_from_round=start_round,
            clients=[_client_info(c) for c in clients],
            trainable_parameters=trainable,
            frozen_parameters=unique_frozen_parameters(model),
        )
    )

    progress = _ProgressClock(config, algorithm, len(clients), start_round, started, observer)
    ctx = Context(
        config,
        clients,
        model,
        engine.trainer,
        engine.components,
        engine.infos,
        observer,
        should_stop,
        progress.tick,
    )
    evaluator = Evaluator(engine, observer)
    completed = start_round
    try:
        for r in range(start_round, config.rounds):
            play_round(ctx, algorithm, r)
            if ctx.round % config.eval_every == 0 or ctx.round == config.rounds:
                for client in clients:
                    evaluator.evaluate(client.client, algorithm.eval_states(client.client), ctx)
            completed = ctx.round
            write_checkpoint(workdir, completed, fingerprint, algorithm)
        ctx.stage, ctx.round = "post", config.rounds
        for client in clients:
            states = algorithm.post_fl(ctx, client.client)
            evaluator.evaluate(client.client, states, ctx)
            save_final_state(workdir, client.client, states["final"], config.algorithm)
    except Cancelled:
        elapsed = time.monotonic() - started
        observer(RunFinished(status="cancelled", rounds_completed=completed, elapsed_s=elapsed))
        return RunResult("cancelled", completed, elapsed)

    elapsed = time.monotonic() - started
    observer(RunFinished(status="succeeded", rounds_completed=completed, elapsed_s=elapsed))
    return RunResult("succeeded", completed, elapsed)


def _client_info(client: ClientData) -> ClientInfo:
    return ClientInfo(
        client=client.client,
        tasks=[t.name for t in client.tasks],
        modalities=sorted({m for t in client.tasks for m in t.spec.input_modalities}),
        n_train=client.n_train,
        n_test=sum(len(t.test) for t in client.tasks),
    )


def _to(value, device: torch.device):
    """Move every tensor in nested dicts/lists to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _to(v, device) for k, v in value.items()}
    if isinstance(value, list):
        return [_to(v, device) for v in value]
    return value


class Evaluator:
    """Each model of a client on its own test data (local) and on the task's pooled test
    data of all clients (pooled); for text generation also the client's constant answer
    (``model="constant"``), so that chance is visible beside every text metric."""

    def __init__(self, engine: Engine, observer: Observer):
        config, infos = engine.config, engine.infos
        self.model, self.clients, self.components = engine.model, engine.clients, engine.components
        self.infos, self.config, self.device = infos, config, engine.device
        self.params, self.observer = engine.trainer.params, observer
        self.tokenizer = engine.tokenizer
        self._text_scorer: TextScorer | None = None
        # Intermediate rounds read a fixed seeded subset of each set (eval_max_samples);
        # the last round and stage 2 always read the full sets.
        cap = config.eval_max_samples
        self.pooled_full = pooled_test(self.clients)
        self.local_full = {(c.client, t.name): t.test for c in self.clients for t in c.tasks}
        self.pooled = {k: eval_subset(p, cap) for k, p in self.pooled_full.items()}
        self.local = {k: eval_subset(p, cap) for k, p in self.local_full.items()}
        # Metrics by (set, task) of the tensors that task uses in this evaluation round: a
        # model seen again (the global model on every client's pooled set, the last
        # round's models again in stage 2) is not evaluated twice on the same data.
        self._memo: dict[tuple, list[tuple[list[torch.Tensor], dict[str, float]]]] = {}
        self._memo_round: int | None = None
        self._constant: dict[tuple[int, str, Split, bool], dict[str, float]] = {}

    @property
    def text_scorer(self) -> TextScorer | None:
        """Made at the first evaluation, not before round 1: WordNet and BERTScore take
        seconds to load. Loading draws no random numbers from the run's generators."""
        if self._text_scorer is None and any(
            i.family == "text_generation" for i in self.infos.values()
        ):
            config = self.config
            with torch.random.fork_rng(devices=[]):
                self._text_scorer = TextScorer(
                    self.tokenizer, config.bertscore_model, config.bertscore_num_layers
                )
            for metric, reason in self._text_scorer.skipped.items():
                self.observer(MetricSkipped(metric=metric, reason=reason))
        return self._text_scorer

    def evaluate(self, client: int, states: dict[ModelKind, State], ctx: Context) -> None:
        full = self._is_final(ctx)
        if ctx.stage != "post" and ctx.round != self._memo_round:
            self._memo.clear()  # a new round: new models
            self._memo_round = ctx.round
        for kind, state in states.items():
            loaded = False
            for task in self.clients[client].tasks:
                for split in SPLITS:
                    key = ("pooled",) if split == "pooled" else ("local", client)
                    names = self.params.names(self.model.task_components(self.infos[task.name]))
                    tensors = [state[n] for n in names]
                    metrics = self._seen(key, task.name, tensors)
                    if metrics is None:
                        if ctx.should_stop():  # a stage 2 evaluation can take minutes
                            raise Cancelled
                        if not loaded:
                            self.params.load(state, self.components[client])
                            loaded = True
                        pool = self._pool(client, task.name, split, full)
                        metrics = self._metrics(task.name, pool)
                        if ctx.stage != "post":  # stage 2 models are not seen again
                            self._memo.setdefault((key, task.name), []).append((tensors, metrics))
                    self._emit(ctx, client, task.name, kind, split, metrics)
        for task in self.clients[client].tasks:
            if task.spec.family == "text_generation":
                for split in SPLITS:
                    metrics = self._chance(task, split, full)
                    self._emit(ctx, client, task.name, "constant", split, metrics)

    def _is_final(self, ctx: Context) -> bool:
        return ctx.stage == "post" or ctx.round >= self.config.rounds

    def _seen(self, key: tuple, task: str, tensors: list[torch.Tensor]) -> dict[str, float] | None:
        for seen, metrics in self._memo.get((key, task), []):
            if all(a is b for a, b in zip(seen, tensors, strict=True)):
                return metrics
        return None

    def _pool(self, client: int, task: str, split: Split, full: bool) -> Pool:
        if split == "pooled":
            return (self.pooled_full if full else self.pooled)[task]
        return (self.local_full if full else self.local)[(client, task)]

    def _emit(self, ctx, client: int, task: str, kind: ModelKind, split: Split, metrics) -> None:
        n = len(self._pool(client, task, split, self._is_final(ctx)))
        for metric, value in metrics.items():
            self.observer(
                Evaluation(
                    round=ctx.round,
                    stage=ctx.stage,
                    client=client,
                    task=task,
                    model=kind,
                    split=split,
                    metric=metric,
                    value=value,
                    n=n,
                )
            )

    def _chance(self, task: TaskData, split: Split, full: bool) -> dict[str, float]:
        """The client's most frequent training answer, scored on the split (cached: it
        changes with neither round nor model)."""
        key = (task.client, task.name, split, full)
        if key not in self._constant:
            assert self.text_scorer is not None
            answer = most_frequent_answer(task.train, self.text_scorer.end_id)
            pool = self._pool(task.client, task.name, split, full)
            self._constant[key] = constant_answer_metrics(pool, answer, self.text_scorer)
        return self._constant[key]

    def _metrics(self, task: str, pool: Pool) -> dict[str, float]:
        return evaluate_task(
            self.model,
            self.infos[task],
            pool,
            self.config.eval_batch_size,
            self.device,
            self.text_scorer,
        )


class _ProgressClock:
    """Progress and ETA from the count of local trainings, the unit of work of a run."""

    def __init__(self, config, algorithm: Algorithm, n_clients, start_round, started, observer):
        per_round = config.clients_per_round * algorithm.trainings_per_turn
        self.fl_total = config.rounds * per_round
        self.total = self.fl_total + n_clients * algorithm.post_trainings
        self.done = start_round * per_round
        self.done_here = 0
        self.config, self.started, self.observer = config, started, observer
        self.per_round = per_round

    def tick(self) -> None:
        self.done += 1
        self.done_here += 1
        elapsed = time.monotonic() - self.started
        in_fl = self.done <= self.fl_total
        self.observer(
            Progress(
                stage="fl" if in_fl else "post",
                round=min(self.config.rounds, (self.done - 1) // max(self.per_round, 1) + 1),
                total_rounds=self.config.rounds,
                fraction=min(1.0, self.done / max(self.total, 1)),
                elapsed_s=elapsed,
                eta_s=elapsed / self.done_here * max(self.total - self.done, 0),
            )
        )
