"""Per-round checkpoints of trainable state, histories and RNG states, for exact resume."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tap_engine.config import RunConfig

KEEP = 2  # the newest complete checkpoint, plus one in case the newest is being replaced


def config_fingerprint(config: RunConfig) -> str:
    """What must match for a checkpoint to be resumed: everything but name and device."""
    payload = config.model_dump_json(exclude={"name", "device"})
    return hashlib.sha256(payload.encode()).hexdigest()


def rng_states() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def checkpoint_dir(workdir: Path) -> Path:
    return workdir / "checkpoints"


def save_checkpoint(workdir: Path, completed_rounds: int, payload: dict[str, Any]) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves a torn checkpoint."""
    folder = checkpoint_dir(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"round-{completed_rounds:05d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save({"completed_rounds": completed_rounds, **payload}, tmp)
    os.replace(tmp, path)
    for old in sorted(folder.glob("round-*.pt"))[:-KEEP]:
        old.unlink(missing_ok=True)
    return path


def latest_checkpoint(workdir: Path) -> dict[str, Any] | None:
    paths = sorted(checkpoint_dir(workdir).glob("round-*.pt"))
    if not paths:
        return None
    # weights_only=False: the payload holds RNG states (tuples, numpy arrays) we wrote ourselves.
    return torch.load(paths[-1], map_location="cpu", weights_only=False)
