"""The whole-run job (benchmarks/whole_run.py JOB, paper-flava on stand-in data) submitted
twice to a real stack (Redis, the API, one prefork Celery worker; tests/integration/cluster.py),
cold cache then warm, timed from the server's own timestamps: submit → claimed (the run's
``created_at`` to ``claimed_at``), claimed → round 1 (the run log's "round 1/..." line),
the last round's training → the next log line (the text scorer's, made at the first
evaluation) and → stage 2's first line (the evaluation after the last round), and claimed →
finished.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/worker_startup.py [--no-preload]

``--no-preload`` starts the worker with ``TAPFL_WORKER_PRELOAD=0``: each run's process
imports the modelling code and the text metrics itself.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from whole_run import JOB

from tests.integration.cluster import make_cluster


def _at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def phases(run: dict[str, Any], logs: list[dict[str, Any]]) -> dict[str, Any]:
    claimed = _at(run["claimed_at"])
    attempt = [line for line in logs if _at(line["time"]) >= claimed]
    first_round = next(line for line in attempt if line["message"].startswith("round 1/"))
    figures: dict[str, Any] = {
        "submit_to_claimed_s": (claimed - _at(run["created_at"])).total_seconds(),
        "claimed_to_round_1_s": (_at(first_round["time"]) - claimed).total_seconds(),
        "claimed_to_finished_s": (_at(run["finished_at"]) - claimed).total_seconds(),
    }
    # Stage 2's first line ends the evaluation after the last round (plus one client's
    # stage-2 steps). The first line after the last round's training is the text scorer's
    # when it has something to say (a metric it skips), written once nltk and bert_score
    # are imported and BERTScore's model looked for.
    stage2 = next(i for i, line in enumerate(attempt) if "(global_ft model)" in line["message"])
    last_fl = max(i for i in range(stage2) if " client " in attempt[i]["message"])
    at = [_at(line["time"]) for line in attempt]
    figures["last_round_to_next_line_s"] = (at[last_fl + 1] - at[last_fl]).total_seconds()
    figures["eval_after_last_round_s"] = (at[stage2] - at[last_fl]).total_seconds()
    figures["next_line"] = attempt[last_fl + 1]["message"][:60]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-preload", action="store_true", help="TAPFL_WORKER_PRELOAD=0")
    parser.add_argument("--stand-in-rows", type=int, default=200, help="train rows per dataset")
    parser.add_argument("--show-logs", action="store_true", help="print each run's log lines")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # the stand-ins' writes
    from tap_engine.bench.stand_in import stand_in_datasets
    from tap_engine.config import resolve_config

    print(f"load average before: {os.getloadavg()}")
    overrides: dict[str, object] = dict(JOB) | {"backbone.tiny_hidden_size": 48}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = args.stand_in_rows
        config = resolve_config("paper-flava", None, {})
        overrides |= stand_in_datasets(config, folder / "stand-in", rows, rows // 4)
        env = {"TAPFL_WORKER_PRELOAD": "0"} if args.no_preload else {}
        cluster = make_cluster(folder / "home", folder / "cache", **env)
        try:
            cluster.start_redis()
            cluster.start_api()
            cluster.start_worker("bench")
            # Both runs wait for a worker that has finished its own startup.
            deadline = time.monotonic() + 180
            while "ready" not in (cluster.logs / "bench.log").read_text(errors="replace"):
                if time.monotonic() > deadline:
                    raise SystemExit(f"the worker never got ready{cluster.dump()}")
                time.sleep(0.2)
            for label in ("cold", "warm"):
                [run] = cluster.submit(overrides, preset="paper-flava", algorithm=None)["runs"]
                run = cluster.wait_done(run["id"], timeout=3600)
                if run["status"] != "succeeded":
                    raise SystemExit(f"run {run['id']} {run['status']}: {run}{cluster.dump()}")
                logs = cluster.logs_of(run["id"])
                print(f"{label} cache (run {run['id']}, load average {os.getloadavg()}):")
                for key, value in phases(run, logs).items():
                    shown = f"{value:8.2f}" if isinstance(value, float) else value
                    print(f"  {key:32s} {shown}")
                if args.show_logs:
                    for line in logs:
                        print(f"    {line['time']} {line['message'][:110]}")
            preload = [
                line
                for line in (cluster.logs / "bench.log").read_text(errors="replace").splitlines()
                if "imported the runs' libraries" in line
            ]
            print(f"worker: {preload[-1].strip() if preload else 'no preload'}")
        finally:
            cluster.stop()
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
