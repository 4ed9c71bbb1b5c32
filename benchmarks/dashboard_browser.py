"""How long the Run page of a demo run takes in a real browser: headless Chromium
(Playwright, ``/usr/bin/chromium``) opening ``/run?run=ID`` of ``streamlit run
dashboard/app.py``, in front of the real API (``tests/live_api.py``: uvicorn over SQLite)
with a real demo run in it, run to its end by the worker's code in this process
(``tests/dashboard/real_runs.py``). The run has the demo preset's shape (7 clients, 9 client
tasks, 12 rounds, an evaluation every 2 rounds, stage 2) with shorter training
(``--full``: the demo exactly as the preset says, 4-8 minutes on 2 cores). Or a run of a
running API and dashboard given with ``--dashboard``/``--api``/``--token``/``--run``.

Each visit is a fresh browser page (no browser cache shared with the previous visit), timed
from ``page.goto`` to:

- first chart: the first chart drawn (plotly's or Vega-Lite's SVG in the page);
- whole page: the script finished (``stApp`` not running) and every chart drawn.

The first visit finds Streamlit's caches empty (cold); the next ones are warm. Prints the
server-side share too: the time Streamlit's script took (``AppTest``, as
``benchmarks/dashboard_run_page.py`` measures it).

    python benchmarks/dashboard_browser.py                 # fresh API + demo run (about 1 min)
    python benchmarks/dashboard_browser.py --repeat 5 --full
    python benchmarks/dashboard_browser.py --dashboard http://127.0.0.1:8501 \\
        --api http://127.0.0.1:8000 --token T --run 12

Targets: the first chart within 2 s, the whole page within 4 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHROMIUM = "/usr/bin/chromium"
FIRST_CHART_TARGET_S, WHOLE_PAGE_TARGET_S = 2.0, 4.0
COMPARE_TARGET_S = 3.0  # the whole Compare page of a 4-run sweep
# The demo preset's clients, rounds and evaluations; less training per round.
SHORT_DEMO = {"local_steps": 2, "post_iterations": 2, "eval_max_samples": 24, "batch_size": 8}
# The sweep Compare is timed on: four runs in two groups.
SWEEP = {"algorithm": ["tap", "fedavg_ft"], "seed": [1, 2]}

# Streamlit's chart elements: plotly, and Vega-Lite (st.altair_chart and st.*_chart).
CHARTS = "[data-testid=stPlotlyChart], [data-testid=stVegaLiteChart]"
DRAWING = ".main-svg, svg.marks, canvas.marks"  # what each draws once it has drawn
DRAWN = f"[...document.querySelectorAll('{CHARTS}')].filter(c => c.querySelector('{DRAWING}'))"
# The script has finished and no element waits for its code (a chart's is loaded lazily).
IDLE = (
    "document.querySelector('[data-testid=stApp]')?.dataset.testScriptState === 'notRunning'"
    " && !document.querySelector('[data-testid=stSkeleton]')"
)
# Every chart Streamlit has placed is drawn (and there is at least one).
ALL_DRAWN = (
    f"(document.querySelectorAll('{CHARTS}').length === {DRAWN}.length && {DRAWN}.length > 0)"
)


@contextmanager
def demo_runs(full: bool) -> Iterator[tuple[str, str, int, str]]:
    """A fresh real API with one finished demo run and a finished sweep of four demo runs
    (TAP and FedAvg+FT, two seeds each): (API URL, token, run id, the sweep's group id)."""
    from tests.dashboard import real_runs
    from tests.live_api import serve_live_api

    with (
        tempfile.TemporaryDirectory(prefix="tapfl-browser-bench-") as home,
        serve_live_api(Path(home) / "home") as api,
    ):
        overrides = {} if full else SHORT_DEMO
        [run_id] = real_runs.run_ids(real_runs.submit(api, "demo", overrides=overrides))
        sweep = real_runs.submit(api, "demo-sweep", overrides=overrides, sweep=SWEEP)
        start = time.perf_counter()
        for each in [run_id, *real_runs.run_ids(sweep)]:
            outcome = real_runs.run_with_worker(api, each)
            if outcome != "succeeded":
                raise SystemExit(f"demo run {outcome}: {api.call('GET', f'/runs/{each}')}")
        print(f"5 demo runs ran in {time.perf_counter() - start:.0f} s", flush=True)
        yield api.url, api.admin_token, run_id, str(sweep["runs"][0]["group_id"])


class Visit(NamedTuple):
    first: float  # s to the first chart drawn
    whole: float  # s to the whole page
    charts: int


def visit(browser: Any, url: str) -> Visit:
    """One fresh page's visit."""
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    try:
        start = time.perf_counter()
        page.goto(url, wait_until="commit")
        page.wait_for_function(f"{DRAWN}.length > 0", timeout=120_000, polling="raf")
        first = time.perf_counter() - start
        page.wait_for_function(f"{IDLE} && {ALL_DRAWN}", timeout=120_000, polling="raf")
        whole = time.perf_counter() - start
        charts = page.evaluate(f"document.querySelectorAll('{CHARTS}').length")
        if page.get_by_test_id("stException").count():
            raise SystemExit(f"the page failed: {page.get_by_test_id('stException').inner_text()}")
        return Visit(first, whole, int(charts))
    finally:
        page.close()


def script_time(api: str, token: str, run_id: int) -> float:
    """Seconds Streamlit's script takes for the page, warm caches (AppTest, this process)."""
    from streamlit.testing.v1 import AppTest

    os.environ.update(TAPFL_API_URL=api, TAPFL_TOKEN=token)
    times = []
    for _ in range(3):
        at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
        at.run()
        at.switch_page("app_pages/run.py")
        at.query_params["run"] = str(run_id)
        start = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def timed(browser: Any, url: str, repeat: int) -> tuple[Visit, Visit]:
    """(the cold visit, the median of ``repeat`` warm ones) of a page."""
    cold = visit(browser, url)
    warm = [visit(browser, url) for _ in range(repeat)]
    median = Visit(
        statistics.median(w.first for w in warm), statistics.median(w.whole for w in warm), 0
    )
    return cold, median


def report(title: str, cold: Visit, warm: Visit, repeat: int, targets: dict[str, float]) -> None:
    print(f"{title} in Chromium ({cold.charts} charts)")
    for label, times in (("cold (empty caches):", cold), (f"warm (median of {repeat}):", warm)):
        print(f"  {label:<22}first chart {times.first:5.2f} s · whole page {times.whole:5.2f} s")
    for name, target in targets.items():
        took = max(getattr(cold, name), getattr(warm, name))
        verdict = "meets" if took <= target else f"misses by {took - target:.2f} s"
        print(
            f"  {name.replace('first', 'first chart').replace('whole', 'whole page')}: "
            f"{verdict} the {target:.0f} s target"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="warm visits to time")
    parser.add_argument("--full", action="store_true", help="the demo runs as the preset says")
    parser.add_argument("--dashboard", help="a running dashboard (with --api, --token, --run)")
    parser.add_argument("--api", help="the API that dashboard talks to")
    parser.add_argument("--token", help="its token")
    parser.add_argument("--run", type=int, help="the run to open")
    parser.add_argument("--group", help="the sweep to compare")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from tests.dashboard.test_browser import CHROMIUM_ARGS, streamlit_server

    with ExitStack() as stack:
        if args.dashboard:
            api, token, run_id, group = args.api, args.token, args.run, args.group
            dashboard = args.dashboard
        else:
            api, token, run_id, group = stack.enter_context(demo_runs(args.full))
            dashboard = stack.enter_context(streamlit_server(api, token))
        playwright = stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        stack.callback(browser.close)
        run_page = timed(browser, f"{dashboard}/run?run={run_id}", args.repeat)
        compare_page = timed(browser, f"{dashboard}/compare?group={group}", args.repeat)
        script = script_time(api, token, run_id) if api and token else float("nan")

    report(
        f"Run page of run #{run_id}",
        *run_page,
        args.repeat,
        {"first": FIRST_CHART_TARGET_S, "whole": WHOLE_PAGE_TARGET_S},
    )
    print(f"  server-side script run (warm, AppTest): {script:5.2f} s")
    report(
        f"Compare page of a {len(SWEEP['seed']) * len(SWEEP['algorithm'])}-run sweep",
        *compare_page,
        args.repeat,
        {"whole": COMPARE_TARGET_S},
    )


if __name__ == "__main__":
    main()
