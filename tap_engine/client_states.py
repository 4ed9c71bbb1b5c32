"""Per-client trainable states (TAP's and ``local``'s personalized models), kept in memory
up to a budget and spilled to safetensors files beyond it, least recently used first.

A client that has not trained yet holds a view of the initial state: no memory, no file.
With a directory, checkpoints are incremental: ``state_dict`` writes only the states that
changed since the last one (the round's participants, not every client) and returns a
manifest of file names; a spilled state that has not changed since is never rewritten.
"""

from __future__ import annotations

import os
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from tap_engine.models.state import State, names_in, nbytes, sub_view

# Checkpoints keep the newest two; the manifest before them is kept too, so a crash while
# the next checkpoint is written never leaves a retained checkpoint without its files.
MANIFESTS_KEPT = 3


@dataclass(frozen=True)
class Storage:
    """Where client states may go: ``directory`` for spilled and checkpointed states (None:
    memory only, checkpoints hold the tensors); ``budget_bytes`` for states held in memory
    (None: no limit)."""

    directory: Path | None = None
    budget_bytes: int | None = None


@dataclass
class _Entry:
    state: State | None = None  # in memory, or None when only on disk (or initial)
    version: int = 0  # 0: the initial state; +1 per update
    persisted: int = 0  # the newest version on disk (0: none needed for the initial state)
    nbytes: int = 0  # of ``state`` when it is in memory and owned


class ClientStates:
    """``states[client]`` reads, ``states[client] = state`` replaces a client's state."""

    def __init__(
        self, initial: State, components: list[list[str]], storage: Storage | None = None
    ) -> None:
        self.initial = initial
        self.storage = storage or Storage()
        names: dict[tuple[str, ...], list[str]] = {}
        self.names = [names.setdefault(tuple(c), names_in(initial, c)) for c in components]
        self.entries = [_Entry() for _ in components]
        self.lru: OrderedDict[int, None] = OrderedDict()  # in-memory owned states, oldest first
        self.manifests: deque[list[int]] = deque(maxlen=MANIFESTS_KEPT)
        self.device = next(iter(initial.values())).device if initial else None
        if self.storage.directory is not None:
            self.storage.directory.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, client: int) -> State:
        entry = self.entries[client]
        if entry.state is not None:
            if client in self.lru:
                self.lru.move_to_end(client)
            return entry.state
        if entry.version == 0:
            return sub_view(self.initial, self.names[client])
        state = load_file(self._path(client, entry.version), device=str(self.device))
        self._hold(client, state)
        return state

    def __setitem__(self, client: int, state: State) -> None:
        entry = self.entries[client]
        entry.version += 1
        self._hold(client, state)

    @property
    def memory_bytes(self) -> int:
        """Bytes of the states held in memory (views of the initial state cost none)."""
        return sum(self.entries[c].nbytes for c in self.lru)

    @property
    def total_bytes(self) -> int:
        """Bytes of every client's state, wherever it is."""
        return sum(nbytes(sub_view(self.initial, names)) for names in self.names)

    def _hold(self, client: int, state: State) -> None:
        entry = self.entries[client]
        entry.state, entry.nbytes = state, nbytes(state)
        self.lru[client] = None
        self.lru.move_to_end(client)
        budget = self.storage.budget_bytes
        if budget is None or self.storage.directory is None:
            return
        while self.memory_bytes > budget and len(self.lru) > 1:
            self._spill(next(iter(self.lru)))

    def _spill(self, client: int) -> None:
        """Drop a state from memory, writing it first unless its version is on disk."""
        self._persist(client)
        entry = self.entries[client]
        entry.state, entry.nbytes = None, 0
        del self.lru[client]

    def _persist(self, client: int) -> None:
        entry = self.entries[client]
        if entry.persisted == entry.version or entry.state is None:
            return
        path = self._path(client, entry.version)
        tmp = path.with_suffix(".tmp")
        save_file({k: v.detach().contiguous().cpu() for k, v in entry.state.items()}, tmp)
        os.replace(tmp, path)
        entry.persisted = entry.version

    def _path(self, client: int, version: int) -> Path:
        assert self.storage.directory is not None
        return self.storage.directory / f"{client:05d}-{version:06d}.safetensors"

    def state_dict(self) -> dict[str, Any]:
        """Memory only: the states themselves. With a directory: a manifest of versions,
        after writing the states that changed since they were last written."""
        if self.storage.directory is None:
            return {"states": [self[c] for c in range(len(self))]}
        for client in range(len(self)):
            self._persist(client)
        versions = [e.version for e in self.entries]
        self.manifests.append(versions)
        self._collect_garbage()
        return {"versions": versions}

    def load_state_dict(self, saved: dict[str, Any] | list[State]) -> None:
        if isinstance(saved, list):  # a checkpoint of the engine before client stores
            saved = {"states": saved}
        self.lru.clear()
        self.entries = [_Entry() for _ in self.entries]
        if "states" in saved:
            for client, state in enumerate(saved["states"]):
                self[client] = state
            return
        for entry, version in zip(self.entries, saved["versions"], strict=True):
            entry.version = entry.persisted = version
        self.manifests.clear()
        self.manifests.append(list(saved["versions"]))

    def _collect_garbage(self) -> None:
        """Delete files no kept manifest names (older versions, or a crashed run's)."""
        assert self.storage.directory is not None
        keep = {self._path(c, v).name for m in self.manifests for c, v in enumerate(m) if v}
        for path in self.storage.directory.glob("*.safetensors"):
            if path.name not in keep:
                path.unlink(missing_ok=True)
