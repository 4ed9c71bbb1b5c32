"""Where the engine keeps what it can rebuild: tiny backbones, preprocessed data.

Callers name the folder (``run(..., cache_dir=...)``); this is the folder of callers that
name none. ``TAPFL_CACHE_DIR`` is read where a caller meets its user (``tapfl run``, the
worker's settings), never here.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/tapfl``, else ``~/.cache/tapfl`` (the platform's convention)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tapfl"


def cache_folder(cache_dir: Path | None, *parts: str) -> Path:
    """``cache_dir`` (or the default) joined with ``parts``, created if missing."""
    path = Path(cache_dir or default_cache_dir()).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
