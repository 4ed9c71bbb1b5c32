"""The supervisor of `tapfl up` starts a Redis that died again, on its data (real
redis-server processes; the whole stack is in test_stack.py and test_recovery.py)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
import redis

from backend.processes import LOOPBACK, free_port, redis_server_binary, wait_for_redis
from backend.settings import Settings
from backend.stack import MAX_RESTARTS, Stack, StackError

pytestmark = pytest.mark.integration


def _stack_with_redis(home: Path) -> Stack:
    settings = Settings(home=home, redis_port=free_port())
    stack = Stack(settings, external_redis=False)
    args = [
        redis_server_binary(),
        "--port", str(settings.redis_port),
        "--bind", LOOPBACK,
        "--dir", str(home),
        "--appendonly", "yes",
        "--save", "",
    ]  # fmt: skip
    proc = stack.spawn("redis", args, {})
    wait_for_redis(settings.redis_url, proc=proc)
    return stack


def test_a_killed_redis_is_started_again_with_its_data(tmp_path: Path) -> None:
    stack = _stack_with_redis(tmp_path)
    try:
        client = redis.Redis.from_url(stack.settings.redis_url)
        client.rpush("cpu", "a message")
        first = stack.children[0].proc
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        stack.check_children()  # restarts it instead of raising
        assert stack.children[0].proc.pid != first.pid
        assert client.lrange("cpu", 0, -1) == [b"a message"]
    finally:
        stack.stop()


def test_a_redis_that_keeps_dying_stops_the_stack(tmp_path: Path) -> None:
    stack = _stack_with_redis(tmp_path)
    try:
        for _ in range(MAX_RESTARTS):
            stack.children[0].proc.kill()
            stack.children[0].proc.wait(timeout=10)
            stack.check_children()
        stack.children[0].proc.kill()
        stack.children[0].proc.wait(timeout=10)
        with pytest.raises(StackError, match="redis exited with code"):
            stack.check_children()
    finally:
        stack.stop()


def test_any_other_child_that_exits_stops_the_stack(tmp_path: Path) -> None:
    stack = Stack(Settings(home=tmp_path), external_redis=False)
    stack.spawn("worker", [sys.executable, "-c", "raise SystemExit(3)"], {}).wait(timeout=30)
    with pytest.raises(StackError, match="worker exited with code 3"):
        stack.check_children()
