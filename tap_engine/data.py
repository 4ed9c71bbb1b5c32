"""Scenario data: each dataset is opened once and split into a train and a test pool; each
client's share is cut out of both pools by the same shard and label rules, and only the
rows some client uses are decoded and tokenised (then cached on disk).

Test items come only from the test pool, so no test example can reach any client's
training data. Images are kept as uint8 ``[N, 3, 64, 64]`` (always a valid pixel range,
a quarter of float32's memory) and normalised per batch; text is tokenised once with the
backbone's tokenizer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from tap_engine import builtin_data, client_cache, hub
from tap_engine.cache import cache_folder
from tap_engine.config import DatasetSpec, RunConfig, TaskPart, TaskSpec
from tap_engine.errors import DataError
from tap_engine.prompts import PROMPTS, template_prefix

IMAGE_SIZE = 64
# CIFAR-100 statistics, as the paper normalises every image source with them.
IMAGE_MEAN = torch.tensor([0.5071, 0.4865, 0.4409]).view(1, 3, 1, 1)
IMAGE_STD = torch.tensor([0.2673, 0.2564, 0.2762]).view(1, 3, 1, 1)
# The train/test split of a dataset must not depend on the run's seed: every run (and
# every algorithm in a sweep) sees the same held-out items.
SPLIT_SEED = 20250930
IGNORE_INDEX = -100
CACHE_FORMAT = 2  # bump when the encoding changes, so old cache entries are not reused


@dataclass
class Batch:
    """One task's slice of a batch, on the training device, ready for the model."""

    images: torch.Tensor | None  # [B, 3, 64, 64] float, normalised
    input_ids: torch.Tensor | None  # [B, S]
    attention_mask: torch.Tensor | None  # [B, S] bool
    labels: torch.Tensor | None  # [B]
    target_ids: torch.Tensor | None  # [B, T], IGNORE_INDEX at padding
    domain_ids: torch.Tensor  # [B] indices into the model's domain list
    answer_start: torch.Tensor | None = None  # [B] target tokens of the template's prefix

    def __len__(self) -> int:
        return int(self.domain_ids.numel())


@dataclass
class Pool:
    """Tensors of one dataset split; ``ids`` identify items across splits (leak checks)."""

    ids: torch.Tensor  # [N] long, unique within the dataset
    domains: torch.Tensor | None = None  # [N] long, index into scenario_domains(config)
    images: torch.Tensor | None = None  # [N, 3, 64, 64] uint8
    input_ids: torch.Tensor | None = None  # [N, S] long
    attention_mask: torch.Tensor | None = None  # [N, S] bool
    labels: torch.Tensor | None = None  # [N] long
    target_ids: torch.Tensor | None = None  # [N, T] long, IGNORE_INDEX at padding
    # [N] long: how many target tokens are the template's fixed prefix ("Answer:"), which
    # the model learns but metrics do not score.
    answer_start: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.ids.numel())

    def subset(self, index: torch.Tensor) -> Pool:
        return Pool(**{f.name: _take(getattr(self, f.name), index) for f in fields(self)})

    @staticmethod
    def concat(pools: list[Pool]) -> Pool:
        return Pool(
            **{f.name: _cat(f.name, [getattr(p, f.name) for p in pools]) for f in fields(Pool)}
        )

    def batch(self, index: torch.Tensor, device, target_width: int | None = None) -> Batch:
        """Rows ``index`` as a model batch; text is cut to the batch's longest sequence, or
        targets padded to ``target_width`` (so that the head predicts every position)."""
        images = input_ids = attention_mask = target_ids = labels = answer_start = None
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
            targets = targets[:, :width]
            if target_width is not None and target_width > width:
                targets = F.pad(targets, (0, target_width - width), value=IGNORE_INDEX)
            target_ids = targets.to(device, non_blocking=True)
        if self.answer_start is not None:
            answer_start = self.answer_start[index].to(device, non_blocking=True)
        if self.labels is not None:
            labels = self.labels[index].to(device, non_blocking=True)
        domains = self.domains[index] if self.domains is not None else torch.zeros_like(index)
        domains = domains.to(device, non_blocking=True)
        return Batch(images, input_ids, attention_mask, labels, target_ids, domains, answer_start)


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
    ``[N, 3, 64, 64]``. Scaling happens in float and the cast comes last, after clamping:
    values never wrap."""
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


# ---------------------------------------------------------------- opening datasets


def open_split(spec: DatasetSpec, split: str):
    """A ``datasets.Dataset`` for one split: builtin, a local copy (``path``), disk, or hub."""
    import datasets

    if spec.source == "builtin":
        return builtin_data.load(spec.name, split)
    try:
        if spec.source == "disk" or spec.path is not None:
            loaded = datasets.load_from_disk(spec.path or spec.name)
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    splits = ", ".join(loaded)
                    raise DataError(f"dataset {spec.name!r} has no split {split!r} ({splits})")
                return loaded[split]
            return loaded
        hub.settle()  # offline: the cached copy at once, not after the hub client's retries
        return datasets.load_dataset(spec.name, spec.config, split=split)
    except DataError:
        raise
    except Exception as exc:  # datasets raises many types; the run needs one readable reason
        where = spec.path or spec.name
        raise DataError(f"cannot load dataset {where!r} ({spec.source}): {exc}") from exc


@dataclass
class OpenDataset:
    """A dataset's train and test splits, opened (lazily decoded) but not yet encoded."""

    spec: DatasetSpec
    train: Any  # datasets.Dataset
    test: Any
    train_rows: np.ndarray  # row numbers of ``train`` that form the train pool
    test_rows: np.ndarray  # row numbers of ``test`` that form the test pool
    train_labels: np.ndarray | None
    test_labels: np.ndarray | None

    @property
    def test_id_offset(self) -> int:
        """Test items of a separate split get ids after the train split's."""
        return 0 if self.test is self.train else len(self.train)


def open_dataset(spec: DatasetSpec) -> OpenDataset:
    train = open_split(spec, spec.train_split)
    _check_columns(train, spec)
    if spec.test_split is None:  # hold out a fixed fraction of the train split
        test, (train_rows, test_rows) = train, _hold_out(train, spec)
    else:
        test = open_split(spec, spec.test_split)
        _check_columns(test, spec)
        train_rows, test_rows = np.arange(len(train)), np.arange(len(test))
    return OpenDataset(
        spec, train, test, train_rows, test_rows, _labels(train, spec), _labels(test, spec)
    )


def _hold_out(dataset, spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows): a fixed random fraction of the rows, or of the groups."""
    rng = np.random.default_rng(SPLIT_SEED)
    if spec.group_column is None:
        order = rng.permutation(len(dataset))
        n_test = max(1, round(len(dataset) * spec.test_fraction))
        return np.sort(order[n_test:]), np.sort(order[:n_test])
    groups = np.asarray(dataset[spec.group_column])
    unique = np.unique(groups)
    held = unique[rng.permutation(len(unique))[: max(1, round(len(unique) * spec.test_fraction))]]
    in_test = np.isin(groups, held)
    return np.flatnonzero(~in_test), np.flatnonzero(in_test)


def _check_columns(dataset, spec: DatasetSpec) -> None:
    columns = {
        "image_column": spec.image_column,
        "text_column": spec.text_column,
        "target_column": spec.target_column,
        "label_column": spec.label_column,
        "group_column": spec.group_column,
    }
    for field_name, column in columns.items():
        if column and column not in dataset.column_names:
            raise DataError(
                f"dataset {spec.name!r} has no column {column!r} ({field_name}); "
                f"columns: {', '.join(dataset.column_names)}"
            )


def _labels(dataset, spec: DatasetSpec) -> np.ndarray | None:
    if not spec.label_column:
        return None
    return np.asarray(dataset[spec.label_column], dtype=np.int64) - spec.label_offset


# ---------------------------------------------------------------- client shares


def share_rows(rows: np.ndarray, labels: np.ndarray | None, part: TaskPart, cap) -> np.ndarray:
    """Successive contiguous shards of ``rows`` in a fixed shuffled order, then the label
    filter, then the cap: the same rule cuts a client's train and test shares."""
    index = rows[np.random.default_rng(SPLIT_SEED + 1).permutation(len(rows))]
    for shard, count in part.shards:
        index = np.array_split(index, count)[shard]
    if part.labels is not None and labels is not None:
        index = index[np.isin(labels[index], part.labels)]
    if cap is not None:
        index = index[:cap]
    return np.sort(index)


# ---------------------------------------------------------------- encoding


@dataclass(frozen=True)
class TextLimits:
    max_text_length: int
    max_target_length: int


def _tokenizer_id(tokenizer) -> str:
    if tokenizer is None:
        return "none"
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()))
    return f"{type(tokenizer).__name__}:{hashlib.sha256(vocab.encode()).hexdigest()[:16]}"


def encode_rows(
    dataset, rows: np.ndarray, spec: DatasetSpec, tokenizer, limits, cache: Path
) -> Pool:
    """Decode, resize and tokenise ``rows`` of ``dataset`` (cached in the folder ``cache`` by
    a hash of the source, the rows and the preprocessing, so a second run does no
    preprocessing)."""
    key = json.dumps(
        {
            "format": CACHE_FORMAT,
            "spec": spec.model_dump(mode="json"),
            "fingerprint": getattr(dataset, "_fingerprint", None),
            "rows": hashlib.sha256(rows.astype(np.int64).tobytes()).hexdigest(),
            "tokenizer": _tokenizer_id(tokenizer),
            "limits": [limits.max_text_length, limits.max_target_length],
        },
        sort_keys=True,
    )
    path = cache / f"{hashlib.sha256(key.encode()).hexdigest()}.pt"
    if path.exists():
        stored = torch.load(path, weights_only=True)
        return Pool(**stored)
    pool = _encode(dataset.select(rows.tolist()), spec, tokenizer, limits)
    tmp = path.with_suffix(f".{id(pool)}.tmp")
    torch.save({f.name: getattr(pool, f.name) for f in fields(pool)}, tmp)
    tmp.replace(path)
    return pool


def _encode(selection, spec: DatasetSpec, tokenizer, limits: TextLimits) -> Pool:
    pool = Pool(ids=torch.zeros(len(selection), dtype=torch.long))
    if spec.image_column:
        pool.images = to_uint8_images(selection[spec.image_column])
    if spec.label_column:
        labels = torch.tensor(selection[spec.label_column], dtype=torch.long)
        pool.labels = labels - spec.label_offset
    texts, targets, prefixes = _texts(selection, spec)
    if texts is not None:
        encoded = tokenizer(
            texts,
            padding="longest",
            truncation=True,
            max_length=limits.max_text_length,
            return_tensors="pt",
        )
        pool.input_ids = encoded["input_ids"]
        pool.attention_mask = encoded["attention_mask"].bool()
    if targets is not None:
        pool.target_ids, pool.answer_start = _encode_targets(
            targets, prefixes, tokenizer, limits.max_target_length
        )
    return pool


Texts = list[str] | None


def _texts(selection, spec: DatasetSpec) -> tuple[Texts, Texts, Texts]:
    """Input strings, target strings and each target's fixed prefix, by prompt template,
    column template or column."""
    if spec.prompt is not None:
        rows = [
            PROMPTS[spec.prompt](
                row, spec.text_column or "question", spec.target_column or "answer"
            )
            for row in selection
        ]
        return [r[0] for r in rows], [f"{r[1]} {r[2]}" for r in rows], [r[1] for r in rows]
    texts = targets = prefixes = None
    if spec.text_template:
        texts = [spec.text_template.format(**row) for row in selection]
    elif spec.text_column:
        texts = [str(t) for t in selection[spec.text_column]]
    if spec.target_template:
        targets = [spec.target_template.format(**row) for row in selection]
        prefixes = [template_prefix(spec.target_template)] * len(targets)
    elif spec.target_column:
        targets = [str(t) for t in selection[spec.target_column]]
    return texts, targets, prefixes


def end_token_id(tokenizer) -> int:
    """The end-of-text mark every target ends in: the separator, else end-of-sequence."""
    end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if end is None:
        raise DataError(f"tokenizer {type(tokenizer).__name__} has no sep or eos token")
    return int(end)


def _encode_targets(
    texts: list[str], prefixes: Texts, tokenizer, max_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Target token ids ending in the end mark, padded with IGNORE_INDEX so losses and
    metrics skip padding; and per target, how many leading tokens are its prefix."""
    end = end_token_id(tokenizer)
    rows = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_length - 1)
    sequences = [[*ids, end] for ids in rows["input_ids"]]
    width = max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), IGNORE_INDEX, dtype=torch.long)
    for i, ids in enumerate(sequences):
        out[i, : len(ids)] = torch.tensor(ids)
    starts = torch.zeros(len(sequences), dtype=torch.long)
    if prefixes is not None:
        heads = tokenizer(prefixes, add_special_tokens=False)["input_ids"]
        for i, (head, ids) in enumerate(zip(heads, sequences, strict=True)):
            # The prefix tokenises alone as it does in the target (it ends at a word
            # boundary); a truncated target keeps at least its end mark to score.
            if ids[: len(head)] == head:
                starts[i] = min(len(head), len(ids) - 1)
    return out, starts


# ---------------------------------------------------------------- the scenario


def scenario_domains(config: RunConfig) -> list[str]:
    """Every domain of the scenario, sorted: the model's domain experts are indexed so."""
    clients = config.scenario.clients
    return sorted({p.domain for c in clients for t in c.tasks for p in t.parts or ()})


@dataclass
class _Need:
    """The rows one task part takes from its dataset's pools."""

    client: int
    task: int
    part: int
    train: np.ndarray
    test: np.ndarray


def build_clients(config: RunConfig, tokenizer, cache_dir: Path | None = None) -> list[ClientData]:
    """Every client's train and test data. Each dataset is opened once; only rows some
    client uses are encoded, once per split, and kept under ``cache_dir/data`` (default:
    ``tap_engine.cache.default_cache_dir()``), with the whole scenario's pools beside
    them, so that a warm start opens no dataset (``tap_engine.client_cache``)."""
    cache = cache_folder(cache_dir, "data")
    key = client_cache.scenario_key(config, _tokenizer_id(tokenizer), CACHE_FORMAT)
    path = None if key is None else cache / f"clients-{key}.pt"
    if path is not None:
        stored = client_cache.load(path)
        if stored is not None:
            return _clients_from_cache(stored, config)
    clients = _build_clients(config, tokenizer, cache)
    if path is not None:
        client_cache.save(path, clients)
    return clients


def _clients_from_cache(stored: dict[str, torch.Tensor], config: RunConfig) -> list[ClientData]:
    """The clients ``client_cache.save`` wrote, in the scenario's order."""
    names = {f.name for f in fields(Pool)}
    clients = []
    for c, client in enumerate(config.scenario.clients):
        tasks = []
        for t, spec in enumerate(client.tasks):
            prefix = f"{c}/{t}"
            train, test = (
                Pool(**{n: stored.get(f"{prefix}/{split}/{n}") for n in names})
                for split in ("train", "test")
            )
            classes = stored.get(f"{prefix}/num_classes")
            num_classes = None if classes is None else int(classes)
            tasks.append(TaskData(c, spec, num_classes, train, test))
        clients.append(ClientData(c, tasks))
    return clients


def _build_clients(config: RunConfig, tokenizer, cache: Path) -> list[ClientData]:
    limits = TextLimits(config.backbone.max_text_length, config.backbone.max_target_length)
    opened: dict[str, OpenDataset] = {}
    needs: dict[str, list[_Need]] = {}
    for c, client in enumerate(config.scenario.clients):
        for t, task in enumerate(client.tasks):
            for p, part in enumerate(task.parts or ()):
                where = f"client {c}, task {task.task!r}, dataset {part.dataset!r}"
                dspec = config.scenario.datasets[part.dataset]
                try:
                    _check_columns_serve_task(task, dspec)
                    if part.dataset not in opened:
                        opened[part.dataset] = open_dataset(dspec)
                except DataError as exc:
                    raise DataError(f"{where}: {exc}") from exc
                data = opened[part.dataset]
                max_train = _cap(part.max_train, config.scenario.max_train)
                max_test = _cap(part.max_test, config.scenario.max_test)
                train = share_rows(data.train_rows, data.train_labels, part, max_train)
                test = share_rows(data.test_rows, data.test_labels, part, max_test)
                if len(train) == 0 or len(test) == 0:
                    which = "train" if len(train) == 0 else "test"
                    raise DataError(f"{where}: empty {which} split")
                needs.setdefault(part.dataset, []).append(_Need(c, t, p, train, test))

    shares: dict[tuple[int, int, int], tuple[Pool, Pool]] = {}
    for name, parts in needs.items():
        data = opened[name]
        train_pool = _pool_of(
            data, data.train, [n.train for n in parts], 0, tokenizer, limits, cache
        )
        test_pool = _pool_of(
            data, data.test, [n.test for n in parts], data.test_id_offset, tokenizer, limits, cache
        )
        for need in parts:
            shares[(need.client, need.task, need.part)] = (
                train_pool.take_rows(need.train),
                test_pool.take_rows(need.test),
            )

    domains = scenario_domains(config)
    clients = []
    for c, client in enumerate(config.scenario.clients):
        tasks = []
        for t, task in enumerate(client.tasks):
            train_parts, test_parts = [], []
            for p, part in enumerate(task.parts or ()):
                train, test = shares[(c, t, p)]
                domain = domains.index(part.domain)
                train.domains = torch.full((len(train),), domain, dtype=torch.long)
                test.domains = torch.full((len(test),), domain, dtype=torch.long)
                train_parts.append(train)
                test_parts.append(test)
            train, test = Pool.concat(train_parts), Pool.concat(test_parts)
            where = f"client {c}, task {task.task!r}, dataset {task.parts[0].dataset!r}"
            dspec = config.scenario.datasets[task.parts[0].dataset]
            tasks.append(
                TaskData(c, task, _num_classes(where, task, dspec, train, test), train, test)
            )
        clients.append(ClientData(c, tasks))
    return clients


def _cap(*caps: int | None) -> int | None:
    given = [c for c in caps if c is not None]
    return min(given) if given else None


@dataclass
class _RowPool:
    """Encoded rows of one split, addressable by the split's row numbers."""

    pool: Pool
    rows: np.ndarray  # sorted row numbers, one per pool item

    def take_rows(self, rows: np.ndarray) -> Pool:
        return self.pool.subset(torch.from_numpy(np.searchsorted(self.rows, rows)))


def _pool_of(
    data: OpenDataset, split, wanted, id_offset, tokenizer, limits, cache: Path
) -> _RowPool:
    rows = np.unique(np.concatenate(wanted))
    pool = encode_rows(split, rows, data.spec, tokenizer, limits, cache)
    pool.ids = torch.from_numpy(rows + id_offset)
    return _RowPool(pool, rows)


def _check_columns_serve_task(task: TaskSpec, spec: DatasetSpec) -> None:
    text = spec.text_column or spec.text_template or spec.prompt
    target = spec.target_column or spec.target_template or spec.prompt
    needs = {
        "image_column": "image" in (task.modalities or ()) or task.family == "image_generation",
        "text_column (or text_template, prompt)": "text" in (task.modalities or ()) and not text,
        "label_column": task.family.endswith("classification") and not spec.label_column,
        "target_column (or target_template, prompt)": task.family == "text_generation"
        and not target,
    }
    if needs["image_column"] and not spec.image_column:
        raise DataError(f"a {task.family} task on {task.modalities} needs image_column set")
    for field_name, missing in list(needs.items())[1:]:
        if missing:
            raise DataError(f"a {task.family} task on {task.modalities} needs {field_name} set")


def _num_classes(
    where: str, task: TaskSpec, dspec: DatasetSpec, train: Pool, test: Pool
) -> int | None:
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
