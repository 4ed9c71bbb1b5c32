"""How long the dashboard's run page takes to render a 30-client, 200-round run.

Renders the page with Streamlit's AppTest (the app's script run on the server side: API
calls, data frames, figures) against the real API (``backend.main:app`` under uvicorn,
SQLite) with one finished TAP run of that size written into its database (an evaluation
every round, every third client with a second task); or against a running API given with
``--api``/``--token``/``--run``. Prints the time of a cold render (empty caches), of warm
renders (cached, as while a person clicks around) and of switching to another page of
clients.

    python benchmarks/dashboard_run_page.py                       # real API + SQLite
    python benchmarks/dashboard_run_page.py --clients 30 --rounds 200 --repeat 5
    python benchmarks/dashboard_run_page.py --api http://127.0.0.1:8000 --token T --run 12

The target (issue 7) is a render under 3 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
APP = ROOT / "dashboard" / "app.py"
TARGET_S = 3.0


def render(run_id: int, page: int | None = None) -> tuple[float, object]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.switch_page("app_pages/run.py")
    at.query_params["run"] = str(run_id)
    start = time.perf_counter()
    at.run()
    took = time.perf_counter() - start
    if at.exception:
        raise SystemExit(f"the page failed: {[e.value for e in at.exception]}")
    if page is not None:
        control = next(c for c in at.get("segmented_control") if c.label.startswith("Clients"))
        control.set_value(page)
        start = time.perf_counter()
        at.run()
        took = time.perf_counter() - start
    return took, at


@contextmanager
def real_api(clients: int, rounds: int) -> Iterator[tuple[str, str, int, str]]:
    """The real API app on loopback over a fresh SQLite database that holds one finished
    large run: (url, token, run id, description)."""
    import uvicorn
    from sqlalchemy import insert

    from backend.processes import free_port as unused_port
    from tests.dashboard.canned_rows import large_run_rows

    with tempfile.TemporaryDirectory(prefix="tapfl-bench-") as home:
        url = f"sqlite:///{home}/tapfl.db"
        os.environ.update(
            TAPFL_HOME=home,
            TAPFL_DATABASE_URL=url,
            TAPFL_REDIS_URL=f"redis://127.0.0.1:{unused_port()}/0",  # none: health degraded
            TAPFL_RECONCILE_INTERVAL_S="0",
        )
        from backend.auth import create_user
        from backend.db import session_factory, upgrade_database
        from backend.models import Experiment, Metric, Replacement, Run, TrainingLoss

        upgrade_database(url)
        metrics, losses, replacements = large_run_rows(clients, rounds)
        with session_factory(url)() as session:
            user, token = create_user(session, "bench", is_admin=True)
            experiment = Experiment(name="large", preset="demo", owner=user, spec={})
            run = Run(
                experiment=experiment, algorithm="tap", seed=41, status="succeeded",
                stage="post", round=rounds, total_rounds=rounds, progress=1.0, group_id="bench",
                config={"rounds": rounds, "eval_every": 1, "algorithm": "tap", "seed": 41},
            )  # fmt: skip
            session.add(experiment)
            session.flush()
            for model, rows in (
                (Metric, metrics),
                (TrainingLoss, losses),
                (Replacement, replacements),
            ):
                if rows:
                    session.execute(insert(model), [{**row, "run_id": run.id} for row in rows])
            session.commit()
            run_id = run.id
        port = unused_port()
        server = uvicorn.Server(
            uvicorn.Config("backend.main:app", host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            if not thread.is_alive():
                raise SystemExit("the API did not start")
            time.sleep(0.05)
        try:
            yield (
                f"http://127.0.0.1:{port}",
                token,
                run_id,
                f"real API + SQLite: {clients} clients x {rounds} rounds, "
                f"{len(metrics):,} metric rows, {len(losses):,} loss rows",
            )
        finally:
            server.should_exit = True
            thread.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3, help="warm renders to time")
    parser.add_argument("--api", help="a running tapfl API instead of a fresh one")
    parser.add_argument("--token", help="its token (with --api)")
    parser.add_argument("--run", type=int, help="the run to render (with --api)")
    args = parser.parse_args()

    import streamlit as st

    with ExitStack() as stack:
        if args.api:
            os.environ.update(TAPFL_API_URL=args.api, TAPFL_TOKEN=args.token or "")
            run_id = args.run or 1
            size = f"run {run_id} at {args.api}"
        else:
            url, token, run_id, size = stack.enter_context(real_api(args.clients, args.rounds))
            os.environ.update(TAPFL_API_URL=url, TAPFL_TOKEN=token)

        st.cache_data.clear()
        st.cache_resource.clear()
        cold, at = render(run_id)
        charts = len(at.get("plotly_chart"))
        warm = [render(run_id)[0] for _ in range(args.repeat)]
        other_page = render(run_id, page=1)[0]

    print(f"run page render ({size}; {charts} charts on the first page of clients)")
    print(f"  cold (empty caches):        {cold:6.2f} s")
    print(f"  warm (median of {args.repeat}):         {statistics.median(warm):6.2f} s")
    print(f"  next page of clients:       {other_page:6.2f} s")
    verdict = "meets" if max(cold, other_page) < TARGET_S else "misses"
    print(f"  {verdict} the {TARGET_S:.0f} s target (cold render and page switch)")


if __name__ == "__main__":
    main()
