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

- first chart: the first chart drawn (plotly's or Vega-Lite's SVG in the page, or a chart
  drawn on the server, once its image has loaded);
- whole page: the script finished (``stApp`` not running) and every chart drawn.

The first visit finds Streamlit's caches empty (cold); the next ones are warm. Prints the
server-side share too: the time Streamlit's script took (``AppTest``, as
``benchmarks/dashboard_run_page.py`` measures it).

Beside those, to tell the page's own cost from the browser's and Streamlit's:

- HTTP cache warm: every visit a new page of one browser context whose earlier visit
  loaded the page (what a returning user sees: Streamlit's script, fonts and chart code
  come from the browser's cache);
- in-app: from the loaded Runs page, a click on the sidebar's Run (Compare) link, timed
  from the click (Streamlit reruns over its websocket, no page load). The first click of
  a context, then the median of the next ones;
- the Streamlit floor: a one-chart Streamlit app (a tiny Vega-Lite spec, same config and
  ``streamlit run`` as the dashboard) timed the same ways, so the page's own cost is the
  difference;
- one profiled fresh visit per page: the bytes of script, CSS and fonts it loaded, and
  Chrome's time spent running script, layout and style (DevTools ``Performance`` metrics),
  and any request to a host other than the dashboard's.

The load average (``os.getloadavg``) is printed before and after: the figures swing with
other work on the machine.

    python benchmarks/dashboard_browser.py                 # fresh API + demo run (about 1 min)
    python benchmarks/dashboard_browser.py --repeat 5 --full
    python benchmarks/dashboard_browser.py --dashboard http://127.0.0.1:8501 \\
        --api http://127.0.0.1:8000 --token T --run 12
    git worktree add /tmp/before main && python benchmarks/dashboard_browser.py \\
        --against /tmp/before    # another checkout's pages, side by side, same API and runs

Targets: the first chart within 2 s, the whole page within 4 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHROMIUM = "/usr/bin/chromium"
FIRST_CHART_TARGET_S, WHOLE_PAGE_TARGET_S = 2.0, 4.0
COMPARE_TARGET_S = 3.0  # the whole Compare page of a 4-run sweep
# The demo preset's clients, rounds and evaluations; less training per round.
SHORT_DEMO = {"local_steps": 2, "post_iterations": 2, "eval_max_samples": 24, "batch_size": 8}
# The sweep Compare is timed on: four runs in two groups.
SWEEP = {"algorithm": ["tap", "fedavg_ft"], "seed": [1, 2]}

# The charts: plotly's and Vega-Lite's elements, and the charts drawn on the server
# (``dashboard/static_chart.py``: an image in a container keyed ``static_chart_*``).
CHARTS = "[data-testid=stPlotlyChart], [data-testid=stVegaLiteChart], [class*=st-key-static_chart_]"
DRAWING = ".main-svg, svg.marks, canvas.marks"  # what each draws once it has drawn
IMAGE_DRAWN = "((i) => !!i && i.complete && i.naturalWidth > 0)(c.querySelector('img'))"
DRAWN = (
    f"[...document.querySelectorAll('{CHARTS}')]"
    f".filter(c => c.querySelector('{DRAWING}') || {IMAGE_DRAWN})"
)
# The script has finished and no element waits for its code (a chart's is loaded lazily).
IDLE = (
    "document.querySelector('[data-testid=stApp]')?.dataset.testScriptState === 'notRunning'"
    " && !document.querySelector('[data-testid=stSkeleton]')"
)
# Every chart Streamlit has placed is drawn (and there is at least one).
ALL_DRAWN = (
    f"(document.querySelectorAll('{CHARTS}').length === {DRAWN}.length && {DRAWN}.length > 0)"
)


# The Streamlit floor: one tiny Vega-Lite chart and nothing else.
FLOOR_APP = """import streamlit as st

st.vega_lite_chart(
    {
        "data": {"values": [{"x": 1, "y": 2}, {"x": 2, "y": 3}, {"x": 3, "y": 1}]},
        "mark": "line",
        "encoding": {
            "x": {"field": "x", "type": "quantitative"},
            "y": {"field": "y", "type": "quantitative"},
        },
    }
)
"""
VIEWPORT = {"width": 1600, "height": 1000}
# Every resource's size and timing, as the browser saw them.
RESOURCES = """performance.getEntriesByType('resource').map(e => ({
    name: e.name, encoded: e.encodedBodySize, decoded: e.decodedBodySize,
    transfer: e.transferSize, end: e.responseEnd}))"""


@contextmanager
def floor_app() -> Iterator[Path]:
    """The floor app's script in a temporary folder, with the dashboard's config."""
    with tempfile.TemporaryDirectory(prefix="tapfl-streamlit-floor-") as folder:
        script = Path(folder) / "floor.py"
        script.write_text(FLOOR_APP)
        shutil.copytree(ROOT / "dashboard" / ".streamlit", Path(folder) / ".streamlit")
        yield script


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
        # The demo run last: the newest run, which the Run page opens without ``?run=``.
        sweep = real_runs.submit(api, "demo-sweep", overrides=overrides, sweep=SWEEP)
        [run_id] = real_runs.run_ids(real_runs.submit(api, "demo", overrides=overrides))
        start = time.perf_counter()
        for each in [run_id, *real_runs.run_ids(sweep)]:
            outcome = real_runs.run_with_worker(api, each)
            if outcome != "succeeded":
                raise SystemExit(f"demo run {outcome}: {api.call('GET', f'/runs/{each}')}")
        print(f"5 demo runs ran in {time.perf_counter() - start:.0f} s", flush=True)
        settle()
        yield api.url, api.admin_token, run_id, str(sweep["runs"][0]["group_id"])


class Visit(NamedTuple):
    first: float  # s to the first chart drawn
    whole: float  # s to the whole page
    charts: int


def drawn(page: Any, start: float, where: str = "true") -> Visit:
    """Waits for the first chart, then the whole page (``where`` holding too)."""
    page.wait_for_function(f"{where} && {DRAWN}.length > 0", timeout=120_000, polling="raf")
    first = time.perf_counter() - start
    page.wait_for_function(f"{where} && {IDLE} && {ALL_DRAWN}", timeout=120_000, polling="raf")
    whole = time.perf_counter() - start
    charts = page.evaluate(f"document.querySelectorAll('{CHARTS}').length")
    if page.get_by_test_id("stException").count():
        raise SystemExit(f"the page failed: {page.get_by_test_id('stException').inner_text()}")
    return Visit(first, whole, int(charts))


def load(page: Any, url: str) -> Visit:
    start = time.perf_counter()
    page.goto(url, wait_until="commit")
    return drawn(page, start)


def visit(browser: Any, url: str) -> Visit:
    """One fresh page's visit."""
    page = browser.new_page(viewport=VIEWPORT)
    try:
        return load(page, url)
    finally:
        page.close()


def median(visits: list[Visit]) -> Visit:
    return Visit(
        statistics.median(v.first for v in visits),
        statistics.median(v.whole for v in visits),
        visits[0].charts,
    )


def cached_visits(browser: Any, url: str, repeat: int) -> Visit:
    """The median of ``repeat`` visits, each a new page of one browser context whose HTTP
    cache an earlier visit of the page filled (the previous page closed first)."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        visits = []
        for _ in range(repeat + 1):
            page = context.new_page()
            try:
                visits.append(load(page, url))
            finally:
                page.close()
        return median(visits[1:])
    finally:
        context.close()


def in_app(browser: Any, dashboard: str, path: str, repeat: int) -> tuple[Visit, Visit]:
    """From the loaded Runs page, a click on the sidebar's link to ``path``: (the first
    click of a fresh browser context, the median of ``repeat`` more in that context)."""
    context = browser.new_context(viewport=VIEWPORT)
    link = f"[data-testid=stSidebarNav] a[href$='/{path}']"
    there = f"location.pathname.endsWith('/{path}')"
    try:
        visits = []
        for _ in range(repeat + 1):
            page = context.new_page()
            try:
                page.goto(f"{dashboard}/", wait_until="commit")
                page.get_by_test_id("stDataFrame").wait_for(timeout=120_000)
                page.wait_for_function(IDLE, timeout=120_000, polling="raf")
                page.locator(link).wait_for(timeout=60_000)
                start = time.perf_counter()
                page.locator(link).click()
                visits.append(drawn(page, start, there))
                if not visits[-1].charts:
                    raise SystemExit(f"{path}: no chart after the click")
                heading = page.locator("h1").first.inner_text()
            finally:
                page.close()
        print(f"  in-app {path}: opened {heading!r}")
        return visits[0], median(visits[1:])
    finally:
        context.close()


class Profile(NamedTuple):
    kinds: dict[str, tuple[int, int, int]]  # kind -> (files, encoded bytes, decoded bytes)
    last_byte_s: float  # the last resource's last byte, s after the navigation began
    metrics: dict[str, float]  # Chrome's Performance metrics
    outside: set[str]  # hosts other than the dashboard's that the page asked


def kind_of(url: str) -> str:
    path = urlparse(url).path
    for ext, kind in ((".js", "script"), (".css", "css"), (".woff2", "fonts"), (".woff", "fonts")):
        if path.endswith(ext):
            return kind
    return "other"


def profile(browser: Any, url: str) -> Profile:
    """One fresh page's visit, with what it loaded and what Chrome spent its time on."""
    page = browser.new_page(viewport=VIEWPORT)
    try:
        cdp = page.context.new_cdp_session(page)
        cdp.send("Performance.enable")
        hosts: set[str] = set()
        page.on("request", lambda request: hosts.add(urlparse(request.url).netloc))
        load(page, url)
        entries = page.evaluate(RESOURCES)
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    finally:
        page.close()
    kinds: dict[str, tuple[int, int, int]] = {}
    for entry in entries:
        files, encoded, decoded = kinds.get(kind_of(entry["name"]), (0, 0, 0))
        kinds[kind_of(entry["name"])] = (
            files + 1,
            encoded + entry["encoded"],
            decoded + entry["decoded"],
        )
    last = max((entry["end"] for entry in entries), default=0.0) / 1000
    return Profile(kinds, last, metrics, hosts - {urlparse(url).netloc})


def print_profile(title: str, found: Profile) -> None:
    mb = 1024 * 1024
    print(f"{title}: one fresh visit loaded")
    for kind, (files, encoded, decoded) in sorted(found.kinds.items()):
        print(
            f"  {kind:<7}{files:3d} files  {encoded / mb:6.2f} MB sent  "
            f"{decoded / mb:6.2f} MB unpacked"
        )
    m = found.metrics
    print(
        f"  last byte at {found.last_byte_s:.2f} s; Chrome busy: script "
        f"{m.get('ScriptDuration', 0):.2f} s, layout {m.get('LayoutDuration', 0):.2f} s, "
        f"style {m.get('RecalcStyleDuration', 0):.2f} s, all tasks "
        f"{m.get('TaskDuration', 0):.2f} s"
    )
    print(f"  other hosts asked: {', '.join(sorted(found.outside)) or 'none'}")


def script_time(api: str, token: str, run_id: int) -> float:
    """Seconds Streamlit's script takes for the page, warm caches (AppTest, this process)."""
    from streamlit.components.v2 import component_manager
    from streamlit.testing.v1 import AppTest

    from dashboard import signin

    # AppTest scans the installed packages for components when it runs the app (0.5 s in a
    # profile), which the real server does once at start: leave it out of the page's time.
    component_manager.BidiComponentManager.discover_and_register_components = (  # type: ignore[method-assign]
        lambda self, *args, **kwargs: None
    )
    os.environ.update(TAPFL_API_URL=api, TAPFL_TOKEN=token)
    times = []
    for _ in range(3):
        at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
        # Signed in as the sign-in form leaves a session: without it the page is the form.
        at.session_state[signin.TOKEN_KEY] = token
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
    return cold, median([visit(browser, url) for _ in range(repeat)])


class Modes(NamedTuple):
    """A page's figures in every mode."""

    cold: Visit  # fresh browser context, Streamlit's caches empty
    warm: Visit  # fresh browser context each visit, median
    cached: Visit  # the browser's HTTP cache warm, median
    click_first: Visit | None  # in-app, the first click of a context
    click: Visit | None  # in-app, median


def all_modes(browser: Any, url: str, repeat: int, dashboard: str, path: str | None) -> Modes:
    cold, warm = timed(browser, url, repeat)
    cached = cached_visits(browser, url, repeat)
    clicks = in_app(browser, dashboard, path, repeat) if path else (None, None)
    return Modes(cold, warm, cached, *clicks)


def side_by_side(pages: dict[str, Modes], repeat: int) -> None:
    """Every page's figures in every mode, first chart / whole page in s."""
    rows = (
        ("fresh context, cold server", "cold"),
        (f"fresh context (median of {repeat})", "warm"),
        (f"HTTP cache warm (median of {repeat})", "cached"),
        ("in-app click, first of a context", "click_first"),
        (f"in-app click (median of {repeat})", "click"),
    )
    width = 22
    print("\nSide by side: first chart / whole page, s")
    print(" " * 38 + "".join(f"{name[:width]:>{width}}" for name in pages))
    for label, field in rows:
        cells = []
        for modes in pages.values():
            v = getattr(modes, field)
            cells.append("-" if v is None else f"{v.first:5.2f} / {v.whole:5.2f}")
        print(f"  {label:<36}" + "".join(f"{c:>{width}}" for c in cells))


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
    parser.add_argument(
        "--against",
        type=Path,
        help="another checkout (e.g. a `git worktree` of main): its dashboard is timed the "
        "same ways against the same API and runs, page by page beside this one",
    )
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from tests.dashboard.test_browser import CHROMIUM_ARGS, streamlit_server

    print(f"load average at the start: {load_average()}", flush=True)
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
        other = None
        if args.against:
            other = stack.enter_context(streamlit_server(api, token, checkout=args.against))
        pages: dict[str, Modes] = {}
        for name, path, query in (
            ("Run", "run", f"run={run_id}"),
            ("Compare", "compare", f"group={group}"),
        ):
            for where, label in ((dashboard, name), (other, f"{name}, against")):
                if where is not None:
                    pages[label] = all_modes(
                        browser, f"{where}/{path}?{query}", args.repeat, where, path
                    )
        run_url, compare_url = f"{dashboard}/run?run={run_id}", f"{dashboard}/compare?group={group}"
        run_page, compare_page = pages["Run"][:2], pages["Compare"][:2]
        floor = stack.enter_context(
            streamlit_server(api or "", None, app=stack.enter_context(floor_app()))
        )
        floor_modes = all_modes(browser, f"{floor}/", args.repeat, floor, None)
        profiles = {
            "Run page": profile(browser, run_url),
            "Compare page": profile(browser, compare_url),
            "Streamlit floor": profile(browser, f"{floor}/"),
        }
        if other is not None:
            profiles["Run page, against"] = profile(browser, f"{other}/run?run={run_id}")
            profiles["Compare page, against"] = profile(browser, f"{other}/compare?group={group}")
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
    if args.against:
        print(f"against: {args.against} (its dashboard, the same API and runs)")
    side_by_side({**pages, "Streamlit floor": floor_modes}, args.repeat)
    print()
    for title, found in profiles.items():
        print_profile(title, found)
    print(f"load average at the end: {load_average()}")


def settle(below: float = 1.0, at_most_s: float = 180.0) -> None:
    """Waits for the runs' load to pass (the 1-minute load average under ``below``, or
    ``at_most_s``), so that the pages are timed on a machine as quiet as it gets."""
    deadline = time.monotonic() + at_most_s
    while os.getloadavg()[0] >= below and time.monotonic() < deadline:
        time.sleep(5)
    print(f"load average when the timing starts: {load_average()}", flush=True)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1, 5, 15 min)"


if __name__ == "__main__":
    main()
