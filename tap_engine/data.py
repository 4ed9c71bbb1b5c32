"""Scenario data: load each dataset once, split it into train and test pools, and cut each
client's share out of both pools with the same shard and label rules.

Test items come only from the test pool, so no test example can reach any client's
training data. Images are float tensors ``[N, 3, 64, 64]`` in ``[0, 1]`` before
normalisation (never cast through uint8 after scaling).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


class DataError(ValueError):
    """Data that cannot serve a scenario; the message names the client and the dataset."""


@dataclass
class Pool:
    """Tensors of one dataset split; ``ids`` identify items across splits (leak checks)."""

    images: torch.Tensor  # [N, 3, 64, 64], normalised
    labels: torch.Tensor  # [N] long (-1 when the dataset has none)
    ids: torch.Tensor  # [N] long, unique within the dataset

    def __len__(self) -> int:
        return int(self.ids.numel())

    def subset(self, index: torch.Tensor) -> Pool:
        return Pool(self.images[index], self.labels[index], self.ids[index])


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
    """``[N, C, H, W]`` in [0, 1] -> ``[N, 3, 64, 64]`` normalised with CIFAR-100 stats."""
    images = images.float()
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if images.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
        images = F.interpolate(images, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear")
    return ((images.clamp(0, 1) - IMAGE_MEAN) / IMAGE_STD).contiguous()


def _sklearn_digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images / 16.0).unsqueeze(1)  # [N, 1, 8, 8], 0..1
    return images, torch.from_numpy(digits.target).long()


BUILTIN_SOURCES: dict[str, Callable[[], tuple[torch.Tensor, torch.Tensor]]] = {
    "sklearn_digits": _sklearn_digits,
}


def _hf_images_labels(dataset, spec: DatasetSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (PIL or arrays) and integer labels of a ``datasets.Dataset``."""
    missing = [
        c for c in (spec.image_column, spec.label_column) if c and c not in dataset.column_names
    ]
    if missing:
        raise DataError(
            f"dataset {spec.name!r} has no column {missing[0]!r} "
            f"(columns: {', '.join(dataset.column_names)})"
        )
    images = []
    for item in dataset[spec.image_column]:
        array = np.asarray(
            item.convert("RGB") if hasattr(item, "convert") else item, dtype=np.float32
        )
        if array.ndim == 2:
            array = array[:, :, None]
        scale = 255.0 if array.max(initial=0.0) > 1.0 else 1.0
        tensor = torch.from_numpy(array / scale).permute(2, 0, 1).unsqueeze(0)
        images.append(F.interpolate(tensor, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear"))
    labels = (
        torch.tensor(dataset[spec.label_column], dtype=torch.long)
        if spec.label_column
        else torch.full((len(images),), -1, dtype=torch.long)
    )
    return torch.cat(images), labels


def _load_hf_split(spec: DatasetSpec, split: str):
    import datasets

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


def load_pools(spec: DatasetSpec) -> tuple[Pool, Pool]:
    """The (train, test) pools of one dataset."""
    if spec.source == "builtin":
        if spec.name not in BUILTIN_SOURCES:
            known = ", ".join(sorted(BUILTIN_SOURCES))
            raise DataError(f"unknown builtin dataset {spec.name!r} (known: {known})")
        images, labels = BUILTIN_SOURCES[spec.name]()
        return _hold_out(normalise(images), labels, spec.test_fraction)
    train_images, train_labels = _hf_images_labels(_load_hf_split(spec, spec.train_split), spec)
    if spec.test_split is None:
        return _hold_out(normalise(train_images), train_labels, spec.test_fraction)
    test_images, test_labels = _hf_images_labels(_load_hf_split(spec, spec.test_split), spec)
    n = len(train_labels)
    train = Pool(normalise(train_images), train_labels, torch.arange(n))
    test = Pool(normalise(test_images), test_labels, torch.arange(n, n + len(test_labels)))
    return train, test


def _hold_out(images: torch.Tensor, labels: torch.Tensor, fraction: float) -> tuple[Pool, Pool]:
    order = torch.from_numpy(np.random.default_rng(SPLIT_SEED).permutation(len(labels)))
    n_test = max(1, round(len(labels) * fraction))
    test_idx, train_idx = order[:n_test].sort().values, order[n_test:].sort().values
    ids = torch.arange(len(labels))
    pool = Pool(images, labels, ids)
    return pool.subset(train_idx), pool.subset(test_idx)


def _client_share(pool: Pool, task: TaskSpec, cap: int | None) -> Pool:
    """Successive contiguous shards of ``pool`` (in a fixed shuffled order), then labels."""
    index = torch.from_numpy(np.random.default_rng(SPLIT_SEED + 1).permutation(len(pool)))
    for shard, count in task.shards:
        index = torch.tensor_split(index, count)[shard]
    if task.labels is not None:
        keep = torch.isin(pool.labels[index], torch.tensor(task.labels))
        index = index[keep]
    if cap is not None:
        index = index[:cap]
    return pool.subset(index.sort().values)


def build_clients(config: RunConfig) -> list[ClientData]:
    """Every client's train and test data; each dataset is loaded once."""
    pools: dict[str, tuple[Pool, Pool]] = {}
    clients = []
    for c, client in enumerate(config.scenario.clients):
        tasks = []
        for task in client.tasks:
            where = f"client {c}, task {task.task!r}, dataset {task.dataset!r}"
            dspec = config.scenario.datasets[task.dataset]
            if task.dataset not in pools:
                try:
                    pools[task.dataset] = load_pools(dspec)
                except DataError as exc:
                    raise DataError(f"{where}: {exc}") from exc
            train_pool, test_pool = pools[task.dataset]
            train = _client_share(train_pool, task, task.max_train)
            test = _client_share(test_pool, task, task.max_test)
            num_classes = _check_task(where, task, dspec, train, test)
            tasks.append(TaskData(c, task, num_classes, train, test))
        clients.append(ClientData(c, tasks))
    return clients


def _check_task(
    where: str, task: TaskSpec, dspec: DatasetSpec, train: Pool, test: Pool
) -> int | None:
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"{where}: empty {'train' if len(train) == 0 else 'test'} split")
    if not task.family.endswith("classification"):
        return None
    seen = int(torch.cat([train.labels, test.labels]).max()) + 1
    num_classes = dspec.num_classes or seen
    low = int(torch.cat([train.labels, test.labels]).min())
    if low < 0 or seen > num_classes:
        raise DataError(f"{where}: labels span [{low}, {seen - 1}], outside [0, {num_classes - 1}]")
    return num_classes


def pooled_test(clients: list[ClientData]) -> dict[str, Pool]:
    """Per task name: the held-out data of that task from all clients (generalization)."""
    by_task: dict[str, list[Pool]] = {}
    for client in clients:
        for task in client.tasks:
            by_task.setdefault(task.name, []).append(task.test)
    return {
        name: Pool(
            torch.cat([p.images for p in parts]),
            torch.cat([p.labels for p in parts]),
            torch.cat([p.ids for p in parts]),
        )
        for name, parts in by_task.items()
    }
