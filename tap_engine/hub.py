"""The Hugging Face hub, asked once per process whether it can be reached.

A machine without hub access otherwise pays for every hub client's retries (BERTScore's
model, a tokenizer, a dataset) one after the other. One short HTTP probe decides; when it
fails, offline mode is switched on for the whole process (``HF_HUB_OFFLINE`` and the flags
that ``huggingface_hub`` and ``datasets`` read at import), so every later lookup goes
straight to the local cache.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import urllib.error
import urllib.request

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 2.0
_TRUE = {"1", "true", "yes", "on"}


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT") or "https://huggingface.co"


def offline() -> bool:
    """Whether offline mode is on (set by the user or by :func:`settle`)."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(name, "").lower() in _TRUE for name in names)


@functools.cache
def hub_reachable(url: str) -> bool:
    """One HTTP request to ``url`` (the hub's endpoint): any answer below 500 means a hub
    is there; a refused connection, a timeout or a server error means it is not."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/api/whoami-v2", timeout=PROBE_TIMEOUT_S):
            return True
    except urllib.error.HTTPError as exc:  # 401 from a real hub: reachable
        return exc.code < 500
    except (OSError, ValueError):
        return False


def go_offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    for module in ("huggingface_hub.constants", "datasets.config"):
        if module in sys.modules:  # read once at import: the env var alone comes too late
            sys.modules[module].HF_HUB_OFFLINE = True


def settle() -> bool:
    """Probe the hub once (unless offline mode is already on) and switch offline mode on
    when it cannot be reached. True when the hub may be used."""
    if offline():
        return False
    if hub_reachable(endpoint()):
        return True
    log.warning("hub %s cannot be reached: offline mode for this process", endpoint())
    go_offline()
    return False
