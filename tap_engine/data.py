"""Scenario data: load each dataset once, split it into train and test pools, and cut each
client's share out of both pools with the same shard and label rules.

Test items come only from the test pool, so no test example can reach any client's
training data. Images are kept as uint8 ``[N, 3, 64, 64]`` (always a valid pixel range,
a quarter of float32's memory) and normalised per batch; text is tokenised once with the
backbone's tokenizer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tap_engine.config import DatasetSpec, RunConfig, TaskSpec

IMAGE_SIZE = 64
# CIFAR-100 statistics, as the paper normalises every image source with them.
IMAGE_MEAN = torch.tensor([0.5071, 0.4865, 0.4409]).view(1, 3, 1, 1)
IMAGE_STD = torch.tensor([0.2673, 0.2564, 0.2762]).view(1, 3, 1, 1)
# The train/test split of a dataset must not depend on the run's seed: every run (and
# every algorithm in a sweep) sees the same held-out items.
SPLIT_SEED = 20250930
IGNORE_INDEX = -100


class DataError(ValueError):
    """Data that cannot serve a scenario; the message names the client and the dataset."""


@dataclass
class Batch:
    """One task's slice of a batch, on the training device, ready for the model."""

    images: torch.Tensor | None  # [B, 3, 64, 64] float, normalised
    input_ids: torch.Tensor | None  # [B, S]
    attention_mask: torch.Tensor | None  # [B, S] bool
    labels: torch.Tensor | None  # [B]
    target_ids: torch.Tensor | None  # [B, T], IGNORE_INDEX at padding
    domain_ids: torch.Tensor  # [B] indices into the model's domain list

    def __len__(self) -> int:
        return int(self.domain_ids.numel())


@dataclass
class Pool:
    """Tensors of one dataset split; ``ids`` identify items across splits (leak checks)."""

    ids: torch.Tensor  # [N] long, unique within the dataset
    images: torch.Tensor | None = None  # [N, 3, 64, 64] uint8
    input_ids: torch.Tensor | None = None  # [N, S] long
    attention_mask: torch.Tensor | None = None  # [N, S] bool
    labels: torch.Tensor | None = None  # [N] long
    target_ids: torch.Tensor | None = None  # [N, T] long, IGNORE_INDEX at padding

    def __len__(self) -> int:
        return int(self.ids.numel())

    def subset(self, index: torch.Tensor) -> Pool:
        return Pool(**{f.name: _take(getattr(self, f.name), index) for f in fields(self)})

    @staticmethod
    def concat(pools: list[Pool]) -> Pool:
        return Pool(
            **{f.name: _cat(f.name, [getattr(p, f.name) for p in pools]) for f in fields(Pool)}
        )

    def batch(self, index: torch.Tensor, domain_id: int, device: torch.device) -> Batch:
        """Rows ``index`` as a model batch; text is cut to the batch's longest sequence."""
        images = input_ids = attention_mask = target_ids = None
        if self.images is not None:
            images = normalise(self.images[index].to(device, non_blocking=True))
        if self.input_ids is not None and self.attention_mask is not None:
            mask = self.attention_mask[index]
            width = max(int(mask.sum(1).max()), 1)
            input_ids = self.input_ids[index, :width].to(device, non_blocking=True)
            attention_mask = mask[:, :width].to(device, non_blocking=True)
        if self.target_ids is not None:
            targets = self.target_ids[index]
            width = max(int((targets != IGNORE_INDEX).sum(1).max()), 1)
            target_ids = targets[:, :width].to(device, non_blocking=True)
        labels = (
            self.labels[index].to(device, non_blocking=True) if self.labels is not None else None
        )
        domains = torch.full((len(index),), domain_id, dtype=torch.long, device=device)
        return Batch(images, input_ids, attention_mask, labels, target_ids, domains)


def _take(t: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor | None:
    return None if t is None else t[index]


# Padding of token sequences when pools of different widths are joined.
_PAD = {"input_ids": 0, "attention_mask": False, "target_ids": IGNORE_INDEX}


def _cat(name: str, parts: list[torch.Tensor | None]) -> torch.Tensor | None:
    if any(p is None for p in parts):
        return None
    if name in _PAD:
        width = max(p.shape[1] for p in parts)
        parts = [F.pad(p, (0, width - p.shape[1]), value=_PAD[name]) for p in parts]
    return torch.cat(parts)


@dataclass
class TaskData:
    client: int
    spec: TaskSpec
    num_classes: int | None
    train: Pool
    test: Pool

    @property
    def name(self) -> str:
        return self.spec.task


@dataclass
class ClientData:
    client: int
    tasks: list[TaskData]

    @property
    def n_train(self) -> int:
        return sum(len(t.train) for t in self.tasks)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, 3, 64, 64]`` -> float normalised with CIFAR-100 statistics."""
    mean, std = IMAGE_MEAN.to(images.device), IMAGE_STD.to(images.device)
    return (images.float() / 255.0 - mean) / std


def to_uint8_images(items: list[Any]) -> torch.Tensor:
    """PIL images or arrays (HxW or HxWxC; integers 0..255, floats 0..1) -> uint8
    ``[N, 3, 64, 64]``.

    Scaling happens in float and the cast comes last, after clamping: values never wrap.
    """
    out = torch.empty((len(items), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8)
    for i, item in enumerate(items):
        if hasattr(item, "convert"):
            item = item.convert("RGB")
        raw = np.asarray(item)
        # Integer pixels are 0..255; float pixels are taken as 0..1.
        array = raw.astype(np.float32) / (255.0 if raw.dtype.kind in "ui" else 1.0)
        if array.ndim == 2:
            array = np.repeat(array[:, :, None], 3, axis=2)
        tensor = torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)
        if tensor.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            tensor = F.interpolate(tensor, size=(IMAGE_SIZE,) * 2, mode="bilinear")
        out[i] = (tensor[0].clamp(0, 1) * 255).round().to(torch.uint8)
    return out


def _sklearn_digits():
    import datasets
    from sklearn.datasets import load_digits

    digits = load_digits()
    return datasets.Dataset.from_dict(
        {"image": list(digits.images / 16.0), "label": digits.target.tolist()}
    )


BUILTIN_SOURCES: dict[str, Callable[[], Any]] = {"sklearn_digits": _sklearn_digits}


def _load_split(spec: DatasetSpec, split: str):
    """A ``datasets.Dataset`` for one split, from a builtin, the hub or disk."""
    import datasets

    if spec.source == "builtin":
        if spec.name not in BUILTIN_SOURCES:
            known = ", ".join(sorted(BUILTIN_SOURCES))
            raise DataError(f"unknown builtin dataset {spec.name!r} (known: {known})")
        return BUILTIN_SOURCES[spec.name]()
    try:
        if spec.source == "disk":
            loaded = datasets.load_from_disk(spec.name)
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise DataError(f"dataset {spec.name!r} has no split {split!r}")
                return loaded[split]
            return loaded
        return datasets.load_dataset(spec.name, spec.config, split=split)
    except DataError:
        raise
    except Exception as exc:  # datasets raises many types; the run needs one readable reason
        raise DataError(f"cannot load dataset {spec.name!r} ({spec.source}): {exc}") from exc


@dataclass(frozen=True)
class TextLimits:
    max_text_length: int
    max_target_length: int


def _encode(dataset, spec: DatasetSpec, tokenizer, limits: TextLimits, first_id: int) -> Pool:
    columns = {
        "image_column": spec.image_column,
        "text_column": spec.text_column,
        "target_column": spec.target_column,
        "label_column": spec.label_column,
    }
    for field_name, column in columns.items():
        if column and column not in dataset.column_names:
            raise DataError(
                f"dataset {spec.name!r} has no column {column!r} ({field_name}); "
                f"columns: {', '.join(dataset.column_names)}"
            )
    pool = Pool(ids=torch.arange(first_id, first_id + len(dataset)))
    if spec.image_column:
        pool.images = to_uint8_images(dataset[spec.image_column])
    if spec.label_column:
        pool.labels = torch.tensor(dataset[spec.label_column], dtype=torch.long)
    if spec.text_column:
        encoded = tokenizer(
            [str(t) for t in dataset[spec.text_column]],
            padding="longest",
            truncation=True,
            max_length=limits.max_text_length,
            return_tensors="pt",
        )
        pool.input_ids = encoded["input_ids"]
        pool.attention_mask = encoded["attention_mask"].bool()
    if spec.target_column:
        pool.target_ids = _encode_targets(
            [str(t) for t in dataset[spec.target_column]], tokenizer, limits.max_target_length
        )
    return pool


def _encode_targets(texts: list[str], tokenizer, max_length: int) -> torch.Tensor:
    """Target token ids ending in the separator (an end-of-text mark), padded with
    IGNORE_INDEX so losses and metrics skip padding."""
    end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    rows = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_length - 1)
    sequences = [[*ids, end] for ids in rows["input_ids"]]
    width = max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), IGNORE_INDEX, dtype=torch.long)
    for i, ids in enumerate(sequences):
        out[i, : len(ids)] = torch.tensor(ids)
    return out


def load_pools(spec: DatasetSpec, tokenizer, limits: TextLimits) -> tuple[Pool, Pool]:
    """The (train, test) pools of one dataset."""
    train_set = _load_split(spec, spec.train_split)
    if spec.test_split is None or spec.source == "builtin":
        pool = _encode(train_set, spec, tokenizer, limits, 0)
        return _hold_out(pool, spec.test_fraction)
    test_set = _load_split(spec, spec.test_split)
    train = _encode(train_set, spec, tokenizer, limits, 0)
    test = _encode(test_set, spec, tokenizer, limits, len(train))
    return train, test


def _hold_out(pool: Pool, fraction: float) -> tuple[Pool, Pool]:
    order = torch.from_numpy(np.random.default_rng(SPLIT_SEED).permutation(len(pool)))
    n_test = max(1, round(len(pool) * fraction))
    return pool.subset(order[n_test:].sort().values), pool.subset(order[:n_test].sort().values)


def _client_share(pool: Pool, task: TaskSpec, cap: int | None) -> Pool:
    """Successive contiguous shards of ``pool`` (in a fixed shuffled order), then labels."""
    index = torch.from_numpy(np.random.default_rng(SPLIT_SEED + 1).permutation(len(pool)))
    for shard, count in task.shards:
        index = torch.tensor_split(index, count)[shard]
    if task.labels is not None and pool.labels is not None:
        index = index[torch.isin(pool.labels[index], torch.tensor(task.labels))]
    if cap is not None:
        index = index[:cap]
    return pool.subset(index.sort().values)


def build_clients(config: RunConfig, tokenizer) -> list[ClientData]:
    """Every client's train and test data; each dataset is loaded and tokenised once."""
    limits = TextLimits(config.backbone.max_text_length, config.backbone.max_target_length)
    pools: dict[str, tuple[Pool, Pool]] = {}
    clients = []
    for c, client in enumerate(config.scenario.clients):
        tasks = []
        for task in client.tasks:
            where = f"client {c}, task {task.task!r}, dataset {task.dataset!r}"
            dspec = config.scenario.datasets[task.dataset]
            try:
                _check_columns_serve_task(task, dspec)
                if task.dataset not in pools:
                    pools[task.dataset] = load_pools(dspec, tokenizer, limits)
            except DataError as exc:
                raise DataError(f"{where}: {exc}") from exc
            train_pool, test_pool = pools[task.dataset]
            train = _client_share(train_pool, task, task.max_train)
            test = _client_share(test_pool, task, task.max_test)
            num_classes = _check_task(where, task, dspec, train, test)
            tasks.append(TaskData(c, task, num_classes, train, test))
        clients.append(ClientData(c, tasks))
    return clients


def _check_columns_serve_task(task: TaskSpec, spec: DatasetSpec) -> None:
    needs = {
        "image_column": "image" in (task.modalities or ()) or task.family == "image_generation",
        "text_column": "text" in (task.modalities or ()),
        "label_column": task.family.endswith("classification"),
        "target_column": task.family == "text_generation",
    }
    for field_name, needed in needs.items():
        if needed and not getattr(spec, field_name):
            raise DataError(f"a {task.family} task on {task.modalities} needs {field_name} set")


def _check_task(
    where: str, task: TaskSpec, dspec: DatasetSpec, train: Pool, test: Pool
) -> int | None:
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"{where}: empty {'train' if len(train) == 0 else 'test'} split")
    if not task.family.endswith("classification"):
        return None
    assert train.labels is not None and test.labels is not None
    labels = torch.cat([train.labels, test.labels])
    low, high = int(labels.min()), int(labels.max())
    num_classes = dspec.num_classes or high + 1
    if low < 0 or high >= num_classes:
        raise DataError(f"{where}: labels span [{low}, {high}], outside [0, {num_classes - 1}]")
    return num_classes


def pooled_test(clients: list[ClientData]) -> dict[str, Pool]:
    """Per task name: the held-out data of that task from all clients (generalization)."""
    by_task: dict[str, list[Pool]] = {}
    for client in clients:
        for task in client.tasks:
            by_task.setdefault(task.name, []).append(task.test)
    return {name: Pool.concat(parts) for name, parts in by_task.items()}


def eval_subset(pool: Pool, cap: int | None) -> Pool:
    """At most ``cap`` items, a fixed random subset (label-sorted datasets stay balanced)."""
    if cap is None or len(pool) <= cap:
        return pool
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(SPLIT_SEED))
    return pool.subset(order[:cap].sort().values)
