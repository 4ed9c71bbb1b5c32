"""``tapfl worker``'s plan and option checks, and ``tapfl reconcile``, without a broker."""

from __future__ import annotations

import shutil
from datetime import timedelta

import pytest
import typer
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from backend import cli, workers
from backend.models import Run, utcnow
from backend.services import runs
from backend.services.leases import Lease
from backend.settings import Settings
from tests.backend.conftest import add_run


def test_one_gpu_worker_per_gpu_each_with_only_its_gpu_and_a_node_name_of_its_own() -> None:
    specs = workers.plan(["0", "1"], None, "lab", 1)
    assert [(s.env["CUDA_VISIBLE_DEVICES"], s.queues, s.concurrency) for s in specs] == [
        ("0", ["gpu"], 1),
        ("1", ["gpu"], 1),
    ]
    assert [s.node.split("@")[0] for s in specs] == ["lab-gpu0", "lab-gpu1"]
    command = specs[1].command("INFO")
    assert command[command.index("-Q") + 1] == "gpu"
    assert command[command.index("--hostname") + 1] == specs[1].node
    assert command[command.index("--concurrency") + 1] == "1"


def test_without_gpus_one_cpu_worker_that_cannot_see_a_gpu() -> None:
    [spec] = workers.plan(None, None, "", 3)
    assert spec.env["CUDA_VISIBLE_DEVICES"] == "" and spec.queues == ["cpu"]
    assert spec.concurrency == 3 and spec.node.startswith("cpu@")
    [spec] = workers.plan(["GPU-8d1c2f0e-1111-2222-3333-444455556666"], ["gpu", "cpu"], "", 1)
    assert spec.queues == ["gpu", "cpu"]


@pytest.mark.parametrize(
    ("text", "gpus"), [("0", ["0"]), ("0,1, 3", ["0", "1", "3"]), ("MIG-ab-12", ["MIG-ab-12"])]
)
def test_gpu_lists_are_read(text: str, gpus: list[str]) -> None:
    assert workers.parse_gpus(text) == gpus


@pytest.mark.parametrize(
    ("text", "words"), [("0,x", "'x' is not a GPU"), ("2,2", "twice"), ("", "''")]
)
def test_bad_gpu_lists_are_refused(text: str, words: str) -> None:
    with pytest.raises(typer.BadParameter, match=words):
        workers.parse_gpus(text)


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has GPUs")
def test_gpus_all_without_a_gpu_says_so() -> None:
    with pytest.raises(typer.BadParameter, match="no NVIDIA GPU"):
        workers.parse_gpus("all")


def test_tapfl_reconcile_requeues_the_runs_of_lost_workers(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session:
        run_id = add_run(session).id
        owner = runs.Owner("gpu0@far pid 7", Lease("far", "b", "n", 7, "1").encode())
        runs.claim_run(
            session, run_id, owner, task_id="t", heartbeat_timeout_s=60, max_recoveries=3
        )
        run = session.get(Run, run_id)
        assert run is not None
        run.heartbeat_at = utcnow() - timedelta(seconds=settings.heartbeat_timeout_s + 5)
        session.commit()
    app = typer.Typer()
    cli.register(app)
    result = CliRunner().invoke(app, ["reconcile"])
    assert result.exit_code == 0, result.output
    assert f"re-queued [{run_id}]" in result.output
    with sessions() as session:
        run = session.get(Run, run_id)
        assert run is not None and run.status == "queued"  # Redis is down: sent later
