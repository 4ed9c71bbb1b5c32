"""The worker imports its runs' libraries before its pool forks (``worker_init``), so that
each run's fresh process inherits them. Each check runs in a fresh interpreter: this test
process has long imported everything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tap_engine.preload import RUN_MODULES
from tests.conftest import clean_env

# What a run would otherwise import at its start (FLAVA) and first evaluation (METEOR).
HEAVY = {"transformers.models.flava.modeling_flava", "nltk.translate.meteor_score"}

# Sends worker_init as Celery does before starting the pool, watching (audit hooks) what
# the handlers open and connect to, and which threads they leave behind.
PROBE = """
import gc, glob, json, sys
from celery.signals import worker_init
from worker.celery_app import app

app.loader.import_default_modules()  # as Celery does before worker_init: torch and all

watched = tuple(sys.argv[1:])
opened, connects = [], []

def hook(event, args):
    if event in ("open", "os.listdir", "os.scandir") and args and isinstance(args[0], str):
        if args[0].startswith(watched):
            opened.append(args[0])
    elif event == "socket.connect":
        connects.append(repr(args[1]))

def threads():
    return sorted(open(f).read().strip() for f in glob.glob("/proc/self/task/*/comm"))

before, modules_before = threads(), sorted(sys.modules)
sys.addaudithook(hook)
worker_init.send(sender=None)
print(json.dumps({
    "modules_before": modules_before,
    "modules": sorted(sys.modules),
    "threads_before": before,
    "threads_after": threads(),
    "opened": opened,
    "connects": connects,
    "frozen": [str(gc.get_freeze_count())],
}))
"""


def _worker_init(tmp_path: Path, **env: str) -> dict[str, list[str]]:
    caches = {
        "HF_HOME": tmp_path / "hf",
        "TAPFL_CACHE_DIR": tmp_path / "cache",
        "NLTK_DATA": tmp_path / "nltk_data",
    }
    for folder in caches.values():
        folder.mkdir()
    full_env = clean_env(
        TAPFL_HOME=str(tmp_path / "home"), **{k: str(v) for k, v in caches.items()}, **env
    )
    full_env.pop("OMP_NUM_THREADS", None)  # as a worker runs: BLAS may start its threads
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, caches.values())],
        env=full_env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_worker_init_imports_the_runs_libraries_without_network_cache_or_threads(
    tmp_path: Path,
) -> None:
    seen = _worker_init(tmp_path)
    assert HEAVY.isdisjoint(seen["modules_before"])  # the engine's own imports leave them
    missing = [name for name in RUN_MODULES if name not in seen["modules"]]
    assert not missing
    assert "tap_engine.algorithms.tap" in seen["modules"]  # the catalog's algorithms
    assert seen["threads_after"] == seen["threads_before"]
    assert seen["opened"] == []
    assert seen["connects"] == []
    # What the children inherit is out of their collector's sight: no copy of its pages.
    assert int(seen["frozen"][0]) > 100_000


def test_a_worker_told_not_to_preload_leaves_the_imports_to_its_runs(tmp_path: Path) -> None:
    seen = _worker_init(tmp_path, TAPFL_WORKER_PRELOAD="0")
    assert HEAVY.isdisjoint(seen["modules"])
    assert seen["frozen"] == ["0"]
