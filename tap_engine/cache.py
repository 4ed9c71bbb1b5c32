"""Where the engine keeps what it can rebuild: tiny backbones, preprocessed data."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``TAPFL_CACHE_DIR``, else ``$XDG_CACHE_HOME/tapfl``, else ``~/.cache/tapfl``."""
    if os.environ.get("TAPFL_CACHE_DIR"):
        path = Path(os.environ["TAPFL_CACHE_DIR"])
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(base) / "tapfl"
    path.mkdir(parents=True, exist_ok=True)
    return path
