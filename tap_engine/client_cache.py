"""The whole scenario's client pools, kept as one file so that a warm start opens no
dataset and tokenises nothing (opening ten datasets cost a warm start more than any
other step of its own).

The key covers everything that changes the pools without opening a dataset: the
scenario, the text limits, the tokenizer's vocabulary, the encoding format, and a version
of each source (the files of a folder saved with ``save_to_disk``, the local hub cache of
a hub dataset, the code and packages that generate a builtin one). A source whose version
cannot be told without opening it is not cached here (the per-split cache still is).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import fields
from importlib import metadata
from pathlib import Path

import torch

from tap_engine.config import DatasetSpec, RunConfig

FORMAT = 1  # bump when the stored layout changes
_BUILTIN_PACKAGES = ("datasets", "scikit-learn", "easy-vqa")


def _folder_version(folder: Path) -> list | None:
    """(relative path, size, mtime) of every file under ``folder``, or None if absent."""
    if not folder.exists():
        return None
    if folder.is_file():
        stat = folder.stat()
        return [[folder.name, stat.st_size, stat.st_mtime_ns]]
    listing = []
    for root, _, files in os.walk(folder):
        for name in files:
            stat = (Path(root) / name).stat()
            listing.append(
                [str(Path(root, name).relative_to(folder)), stat.st_size, stat.st_mtime_ns]
            )
    return sorted(listing)


def _hub_datasets_cache() -> Path:
    """Where ``datasets`` keeps downloaded hub datasets (read from the environment as it
    does, so that ``datasets`` need not be imported)."""
    if os.environ.get("HF_DATASETS_CACHE"):
        return Path(os.environ["HF_DATASETS_CACHE"])
    home = os.environ.get("HF_HOME") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "huggingface"
    )
    return Path(home) / "datasets"


def _package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def source_version(spec: DatasetSpec) -> object | None:
    """What tells whether a dataset's rows changed, or None when only opening it would."""
    if spec.source == "builtin":
        code = Path(__file__).with_name("builtin_data.py").read_bytes()
        packages = {p: _package_version(p) for p in _BUILTIN_PACKAGES}
        return {"code": hashlib.sha256(code).hexdigest(), "packages": packages}
    if spec.source == "disk" or spec.path is not None:
        return _folder_version(Path(spec.path or spec.name))
    return _folder_version(_hub_datasets_cache() / spec.name.replace("/", "___"))


def scenario_key(config: RunConfig, tokenizer_id: str, encoding_format: int) -> str | None:
    """The cache key of ``config``'s client pools, or None when a source has no version."""
    used = {p.dataset for c in config.scenario.clients for t in c.tasks for p in t.parts or ()}
    versions = {}
    for name in sorted(used):
        version = source_version(config.scenario.datasets[name])
        if version is None:
            return None
        versions[name] = version
    key = {
        "format": [FORMAT, encoding_format],
        "scenario": config.scenario.model_dump(mode="json"),
        "limits": [config.backbone.max_text_length, config.backbone.max_target_length],
        "tokenizer": tokenizer_id,
        "sources": versions,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def save(path: Path, clients) -> None:
    """Every pool's tensors and each task's class count, written atomically."""
    stored = {}
    for client in clients:
        for t, task in enumerate(client.tasks):
            prefix = f"{client.client}/{t}"
            if task.num_classes is not None:
                stored[f"{prefix}/num_classes"] = torch.tensor(task.num_classes)
            for split in ("train", "test"):
                pool = getattr(task, split)
                for f in fields(pool):
                    value = getattr(pool, f.name)
                    if value is not None:
                        stored[f"{prefix}/{split}/{f.name}"] = value
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(stored, tmp)
    tmp.replace(path)


def load(path: Path) -> dict[str, torch.Tensor] | None:
    """The tensors ``save`` wrote at ``path`` (keys ``client/task/split/field`` and
    ``client/task/num_classes``), or None if there is no such file. ``tap_engine.data``
    makes its clients of them: this module does not import it, which imports this one."""
    if not path.exists():
        return None
    return torch.load(path, weights_only=True)
