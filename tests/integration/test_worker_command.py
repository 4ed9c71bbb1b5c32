"""``tapfl worker`` for real: its Celery worker processes, their GPU, queue and node name,
their supervision, and a run executed by them."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import tapfl_command
from tests.integration.cluster import Cluster, make_cluster, quick

pytestmark = pytest.mark.integration


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    cluster = make_cluster(tmp_path / "home")
    try:
        cluster.start_redis()
        cluster.start_api()
        yield cluster
    finally:
        cluster.stop()


def _start(cluster: Cluster, *args: str) -> subprocess.Popen[bytes]:
    log = (cluster.logs / "tapfl-worker.log").open("ab")
    with log:
        return subprocess.Popen(
            tapfl_command("worker", *args),
            env=cluster.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def _wait_for_children(proc: subprocess.Popen[bytes], count: int, timeout: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout
    while len(children := _children(proc.pid)) != count:
        assert proc.poll() is None, "tapfl worker exited"
        assert time.monotonic() < deadline, f"{len(children)} workers, not {count}"
        time.sleep(0.1)
    return children


def _option(cmdline: list[str], name: str) -> str:
    return cmdline[cmdline.index(name) + 1]


def _stop(proc: subprocess.Popen[bytes], children: list[int]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    for pid in children:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_one_worker_per_gpu_each_seeing_only_its_gpu_restarted_if_it_dies(
    cluster: Cluster,
) -> None:
    proc = _start(cluster, "--gpus", "0,1", "--name", "t")
    try:
        workers = _wait_for_children(proc, 2)
        seen = {}
        for pid in workers:
            cmdline, env = _cmdline(pid), _environ(pid)
            seen[env["CUDA_VISIBLE_DEVICES"]] = (
                _option(cmdline, "-Q"),
                _option(cmdline, "--concurrency"),
                _option(cmdline, "--hostname").split("@")[0],
            )
            assert "worker.celery_app:app" in cmdline
        assert seen == {"0": ("gpu", "1", "t-gpu0"), "1": ("gpu", "1", "t-gpu1")}

        # A worker that dies is started again, on the same GPU.
        [gpu1] = [pid for pid in workers if _environ(pid)["CUDA_VISIBLE_DEVICES"] == "1"]
        os.kill(gpu1, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while gpu1 in (now := _children(proc.pid)) or len(now) != 2:
            assert time.monotonic() < deadline, "the dead worker was not replaced"
            time.sleep(0.1)
        assert sorted(_environ(pid)["CUDA_VISIBLE_DEVICES"] for pid in now) == ["0", "1"]
        workers = now
    finally:
        if proc.poll() is None:
            _stop(proc, _children(proc.pid))
    assert proc.returncode == 0


def test_without_gpus_one_cpu_worker_that_sees_no_gpu_runs_the_runs(cluster: Cluster) -> None:
    proc = _start(cluster)
    try:
        [pid] = _wait_for_children(proc, 1)
        cmdline = _cmdline(pid)
        assert _environ(pid)["CUDA_VISIBLE_DEVICES"] == ""
        assert _option(cmdline, "-Q") == "cpu" and _option(cmdline, "--hostname").startswith("cpu@")
        [run] = cluster.submit(quick(rounds=1, local_steps=1))["runs"]
        run = cluster.wait_done(run["id"])
        assert run["status"] == "succeeded", f"{run['error']}{cluster.dump()}"
        assert run["worker"].startswith("cpu@")
    finally:
        if proc.poll() is None:
            _stop(proc, _children(proc.pid))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--gpus", "0,x"], "'x' is not a GPU index"),
        (["--gpus", "1,1"], "listed twice"),
        (["--queues", "gpu,fast"], "unknown queue(s) fast"),
        (["--gpus", "0", "--concurrency", "2"], "one run at a time"),
    ],
)
def test_bad_options_are_refused_naming_them(tmp_path: Path, args: list[str], words: str) -> None:
    from tests.conftest import clean_env

    done = subprocess.run(
        tapfl_command("worker", *args),
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(TAPFL_HOME=str(tmp_path), COLUMNS="200"),
    )
    assert done.returncode == 2
    assert words in " ".join(done.stderr.split()), done.stderr
