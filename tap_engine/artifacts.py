"""What a finished run delivers, beside its checkpoints: each client's final personalized
trainable state (its adapters and heads), one safetensors file per client.

``{workdir}/artifacts/client-{client:03d}.safetensors``; the tensor names are the model's
parameter names, so ``load_sub_state`` (or ``safetensors.torch.load_file``) restores them.
"""

from __future__ import annotations

import os
from pathlib import Path

from safetensors.torch import save_file

from tap_engine.models.state import State

ARTIFACTS_DIR = "artifacts"


def artifacts_dir(workdir: Path) -> Path:
    return Path(workdir) / ARTIFACTS_DIR


def adapter_path(workdir: Path, client: int) -> Path:
    return artifacts_dir(workdir) / f"client-{client:03d}.safetensors"


def save_final_state(workdir: Path, client: int, state: State, algorithm: str) -> Path:
    """Write atomically (temp file + rename), as a resumed run may write it again."""
    path = adapter_path(workdir, client)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Own, contiguous CPU copies: safetensors refuses tensors that share storage.
    tensors = {name: t.detach().to("cpu").clone().contiguous() for name, t in state.items()}
    tmp = path.with_suffix(".tmp")
    save_file(tensors, tmp, metadata={"client": str(client), "algorithm": algorithm})
    os.replace(tmp, path)
    return path
