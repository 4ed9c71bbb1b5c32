"""``GET /catalog`` against a real server, and an algorithm that a plugin registers in the
API's process: it shows in the catalog, in the submit form's choices and in the chart
colours. That server runs in this process (uvicorn in a thread, SQLite in a temporary
home), so that the registration made here is the one it serves."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import httpx
import pytest
import streamlit as st
import uvicorn

from backend.api.catalog_schemas import EXAMPLE, Catalog
from backend.client import TapflClient, Unauthorized
from backend.db import dispose_engines
from backend.main import app
from backend.processes import free_port, wait_for_http
from backend.settings import get_settings
from dashboard import chart_style
from tap_engine import catalog
from tap_engine.config import resolve_config
from tests.client.conftest import LiveApi
from tests.dashboard.apptest import signed_in_app

TOY = catalog.AlgorithmInfo(
    "toy_average", "A toy: averages like FedAvg, registered by a plugin", "toy_plugin:Toy"
)


def test_the_catalog_lists_algorithms_families_metrics_and_preset_defaults(
    live_api: LiveApi,
) -> None:
    with TapflClient(live_api.url, live_api.admin_token) as api:
        served = api.catalog()
    assert [a["name"] for a in served["algorithms"]] == list(catalog.algorithm_names())
    tap = served["algorithms"][0]
    assert tap == {
        "name": "tap",
        "description": catalog.algorithm("tap").description,
        "color": catalog.algorithm("tap").color,
    }
    assert served["task_families"] == list(catalog.TASK_FAMILIES)
    metrics = {m["name"]: m for m in served["metrics"]}
    assert metrics["mse"]["higher_is_better"] is False
    assert metrics["mse"]["main_for"] == ["image_generation"]
    assert metrics["loss"]["quality"] is False and metrics["loss"]["main_for"] == []
    assert metrics["chrf"]["main_for"] == ["text_generation"]

    demo = next(p for p in served["presets"] if p["name"] == "demo")
    resolved = resolve_config("demo")
    assert demo["description"]
    for key in (
        "algorithm",
        "rounds",
        "seed",
        "clients_per_round",
        "local_steps",
        "batch_size",
        "grad_accum",
        "peak_lr",
        "min_lr",
        "post_iterations",
        "kd_lambda",
        "eval_every",
        "margins",
    ):
        assert demo["defaults"][key] == getattr(resolved, key), key
    assert demo["defaults"]["clients"] == len(resolved.scenario.clients)


def test_the_catalog_needs_a_token_and_is_in_the_openapi_schema(live_api: LiveApi) -> None:
    with TapflClient(live_api.url, "") as anonymous, pytest.raises(Unauthorized) as refused:
        anonymous.catalog()
    assert refused.value.status == 401
    schema = httpx.get(f"{live_api.url}/api/v1/openapi.json").json()
    answer = schema["paths"]["/api/v1/catalog"]["get"]["responses"]["200"]
    assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/Catalog")
    assert "PresetDefaults" in schema["components"]["schemas"]


@pytest.fixture(scope="module")
def api_in_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API in this process on a fresh SQLite home; the environment points the
    dashboard and ``TapflClient()`` at it."""
    home = tmp_path_factory.mktemp("catalog") / "home"
    with pytest.MonkeyPatch.context() as env:
        for name in list(os.environ):
            if name.startswith("TAPFL_"):
                env.delenv(name)
        env.setenv("TAPFL_HOME", str(home))
        env.setenv("TAPFL_REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # down
        env.setenv("TAPFL_RECONCILE_INTERVAL_S", "0")
        get_settings.cache_clear()
        url = f"http://127.0.0.1:{free_port()}"
        port = int(url.rsplit(":", 1)[1])
        server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            wait_for_http(f"{url}/api/v1/openapi.json", name="uvicorn thread")
            env.setenv("TAPFL_API_URL", url)
            env.setenv("TAPFL_TOKEN", (home / "token").read_text().strip())
            yield url
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            dispose_engines()
            get_settings.cache_clear()


@pytest.fixture
def toy_algorithm() -> Iterator[catalog.AlgorithmInfo]:
    catalog.register_algorithm(TOY)
    st.cache_data.clear()  # the dashboard caches the catalog
    try:
        yield TOY
    finally:
        catalog.unregister_algorithm(TOY.name)
        st.cache_data.clear()


def test_a_registered_algorithm_reaches_the_api_the_submit_form_and_the_charts(
    api_in_process: str, toy_algorithm: catalog.AlgorithmInfo
) -> None:
    with TapflClient() as api:
        served = api.catalog()
    assert served["algorithms"][-1] == {
        "name": TOY.name,
        "description": TOY.description,
        "color": None,
    }

    at = signed_in_app(timeout=60)
    at.run()
    at.switch_page("app_pages/submit.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    choices = at.multiselect[0]
    assert choices.label == "Algorithm"
    assert choices.options == list(catalog.algorithm_names())
    assert TOY.name in choices.options
    choices.set_value([TOY.name]).run()
    assert any(TOY.description in c.value for c in at.caption)

    colors = chart_style.algorithm_colors(served["algorithms"])
    built_in = {a.color for a in catalog.algorithms().values() if a.color}
    assert colors[TOY.name] not in built_in
    assert colors["tap"] == catalog.algorithm("tap").color
    assert chart_style.algorithm_colors(served["algorithms"]) == colors  # deterministic


def test_without_the_plugin_the_catalog_no_longer_lists_it(api_in_process: str) -> None:
    with TapflClient() as api:
        names = [a["name"] for a in api.catalog()["algorithms"]]
    assert TOY.name not in names and names == list(catalog.algorithm_names())


def test_the_openapi_example_is_a_valid_catalog() -> None:
    assert Catalog.model_validate(EXAMPLE).presets[0].defaults.clients == 7
