"""A run's downloadable artifacts: its resolved config (from SQL) and the final personalized
state of each client that the engine wrote into the run's directory
(``tap_engine.artifacts``: ``artifacts/client-NNN.safetensors``).

Only names this listing produces are served, so a request cannot reach other files.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from backend.models import Run
from tap_engine.artifacts import ARTIFACTS_DIR

CONFIG_NAME = "config.json"
_ADAPTER = re.compile(r"^client-(\d{3,})\.safetensors$")


@dataclass(frozen=True)
class Artifact:
    name: str
    kind: str  # config | adapter
    client: int | None
    size: int
    media_type: str
    path: Path | None  # None: served from the database (the config)


def run_dir(run: Run, runs_dir: Path) -> Path:
    if run.workdir:
        return Path(run.workdir)
    return runs_dir / str(run.id)


def config_bytes(run: Run) -> bytes:
    return json.dumps(run.config, indent=2).encode()


def list_artifacts(run: Run, runs_dir: Path) -> list[Artifact]:
    items = [
        Artifact(CONFIG_NAME, "config", None, len(config_bytes(run)), "application/json", None)
    ]
    folder = run_dir(run, runs_dir)
    if (folder / ARTIFACTS_DIR).is_dir():
        for path in sorted((folder / ARTIFACTS_DIR).iterdir()):
            match = _ADAPTER.match(path.name)
            if match and path.is_file():
                size, client = path.stat().st_size, int(match.group(1))
                kind = "application/octet-stream"
                items.append(Artifact(path.name, "adapter", client, size, kind, path))
    return items


def find_artifact(run: Run, runs_dir: Path, name: str) -> Artifact | None:
    return next((a for a in list_artifacts(run, runs_dir) if a.name == name), None)
