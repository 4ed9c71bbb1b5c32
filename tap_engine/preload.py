"""The libraries a run imports after the engine's own: the backbones' and the text head's
modelling code, and the text metrics' libraries (nltk's METEOR alone takes about a second).

A process that starts many runs (the service's worker, whose runs each get a process forked
from it) imports them once, ahead of the runs, so that no run pays for them. Importing
them loads no weights, opens no dataset, touches neither the network nor the caches and
starts no thread.
"""

from __future__ import annotations

import importlib
import logging
import os
import time

log = logging.getLogger(__name__)

RUN_MODULES: tuple[str, ...] = (
    # The backbones (tap_engine.models.backbones) and the text head (models.heads).
    "transformers.models.flava.modeling_flava",
    "transformers.models.vilt.modeling_vilt",
    "transformers.models.bert.tokenization_bert",
    "transformers.models.gpt2.modeling_gpt2",
    # The text scorer (tap_engine.text_metrics), made at a run's first evaluation.
    "nltk.translate.meteor_score",
    "nltk.stem.porter",
    "sacrebleu.metrics",
    "bert_score",
)


def import_run_libraries() -> float:
    """Import ``RUN_MODULES`` and the catalog's algorithms; returns the seconds it took.
    A module that fails to import is logged and skipped: the run that needs it reports the
    error itself."""
    from tap_engine import catalog

    # nltk pulls pandas, hence pyarrow, whose bundled jemalloc would start a background
    # thread (arrow allocates with mimalloc; after a fork jemalloc stops the thread anyway).
    os.environ.setdefault("JE_ARROW_MALLOC_CONF", "background_thread:false")
    start = time.perf_counter()
    algorithms = [info.implementation.partition(":")[0] for info in catalog.algorithms().values()]
    for name in (*RUN_MODULES, *algorithms):
        try:
            importlib.import_module(name)
        except Exception as error:  # a broken optional part must not stop the worker
            log.warning("preload: could not import %s: %s", name, error)
    return time.perf_counter() - start
