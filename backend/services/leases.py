"""Who owns a running run, and whether that owner still lives.

A run's ``lease`` names the process that runs it: the kernel it runs under (``boot_id``),
its PID namespace, its pid and the pid's start time. Another process under the same kernel
and in the same PID namespace (a worker on the same machine or in the same container) can
tell at once whether that process is gone, so a message re-delivered after its worker
process was killed is taken up without waiting for the heartbeat to go stale. Anyone else
relies on the heartbeat.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import cache
from pathlib import Path


@dataclass(frozen=True)
class Lease:
    host: str
    boot_id: str
    pid_ns: str
    pid: int
    started: str  # the process's start time in clock ticks since boot ("" where unknown)

    def encode(self) -> str:
        return f"{self.host}|{self.boot_id}|{self.pid_ns}|{self.pid}|{self.started}"

    @classmethod
    def decode(cls, text: str | None) -> Lease | None:
        parts = (text or "").split("|")
        if len(parts) != 5 or not parts[3].isdigit():
            return None
        host, boot_id, pid_ns, pid, started = parts
        return cls(host, boot_id, pid_ns, int(pid), started)

    @classmethod
    def current(cls) -> Lease:
        pid = os.getpid()
        return cls(socket.gethostname(), _boot_id(), _pid_ns(), pid, _start_ticks(pid))

    def alive(self) -> bool | None:
        """Whether the owning process lives; None when this process cannot tell."""
        here = Lease.current()
        if not (self.boot_id and self.pid_ns and self.started):
            return None
        if (self.boot_id, self.pid_ns) != (here.boot_id, here.pid_ns):
            return None  # another machine, or a PID namespace whose pids mean other things
        # The pid may have been reused by a newer process: its start time tells them apart.
        return _start_ticks(self.pid) == self.started


@cache
def _boot_id() -> str:
    return _read("/proc/sys/kernel/random/boot_id")


@cache
def _pid_ns() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _start_ticks(pid: int) -> str:
    stat = _read(f"/proc/{pid}/stat")
    # The command name (2nd field) may hold spaces and parentheses: split after its end.
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else ""  # field 22 of proc(5): starttime


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""
