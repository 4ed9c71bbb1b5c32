"""The Submit page, rendered by Streamlit's AppTest against the real API on loopback:
the form, the API's preview of what it would queue, its 422s under the fields, and the
experiments it creates."""

from __future__ import annotations

import re
from collections.abc import Callable

from streamlit.testing.v1 import AppTest

from tests.dashboard.conftest import Dashboard

OpenPage = Callable[..., AppTest]
SUBMIT = "app_pages/submit.py"


def texts(at: AppTest, kind: str) -> list[str]:
    return [str(element.value) for element in getattr(at, kind)]


def experiments_total(dashboard: Dashboard) -> int:
    return dashboard.api.call("GET", "/experiments", params={"limit": 1})["total"]


# -- submit --------------------------------------------------------------------------------------


def column_with(at: AppTest, label: str):  # type: ignore[no-untyped-def]
    """The column block holding the widget labelled ``label``."""
    for column in at.columns:
        widgets = [*column.number_input, *column.text_input, *column.selectbox]
        if any(w.label == label for w in [*widgets, *column.multiselect]):
            return column
    raise AssertionError(f"no column holds {label!r}")


def submit(at: AppTest) -> AppTest:
    at.button[0].click().run()
    assert not at.exception
    return at


def test_submit_shows_the_apis_422_under_the_field(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    before = experiments_total(dashboard)
    at = open_page(SUBMIT)
    at.number_input(key="submit_rounds").set_value(0)
    submit(at)
    rounds = column_with(at, "Rounds")
    assert len(rounds.error) == 1
    assert "greater than 0" in rounds.error[0].value
    # Under Rounds, not at the top: the other column and the page's general slot stay clean.
    assert not column_with(at, "Seed").error
    assert experiments_total(dashboard) == before  # nothing was created


def test_submit_offers_the_algorithms_of_the_apis_catalog(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    catalog = dashboard.api.call("GET", "/catalog")
    at = open_page(SUBMIT)
    algorithm = next(w for w in at.multiselect if w.label == "Algorithm")
    assert list(algorithm.options) == [a["name"] for a in catalog["algorithms"]]
    assert dashboard.asked("/catalog")


def test_submit_unknown_algorithm_error_lands_under_algorithm(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    before = experiments_total(dashboard)
    at = open_page(SUBMIT)
    at.multiselect[0].set_value(["fedprox"])  # typed in: the API has the final word
    submit(at)
    algorithm = column_with(at, "Algorithm")
    assert len(algorithm.error) == 1
    assert "unknown algorithm 'fedprox'; choose one of tap" in algorithm.error[0].value
    assert not column_with(at, "Rounds").error
    assert experiments_total(dashboard) == before


def test_submit_error_about_the_request_as_a_whole_shows_above_submit(
    open_page: OpenPage,
) -> None:
    at = open_page(SUBMIT)
    at.text_input[1].input(" ".join(str(seed) for seed in range(257)))  # one run too many
    submit(at)
    assert texts(at, "error") == [
        "`sweep`: the sweep gives 257 runs; at most 256 fit in one experiment"
    ]


def test_submit_rejects_a_seed_that_is_not_a_number(open_page: OpenPage) -> None:
    at = open_page(SUBMIT)
    at.text_input[1].input("forty-two")
    at.button[0].click().run()
    assert "whole numbers" in column_with(at, "Seed").error[0].value


def test_submit_a_seed_sweep_links_each_new_run(open_page: OpenPage, dashboard: Dashboard) -> None:
    at = open_page(SUBMIT)
    at.text_input[0].input("my sweep")
    at.multiselect[0].set_value(["tap"])
    at.text_input[1].input("41, 42")
    at.number_input(key="submit_rounds").set_value(3)
    submit(at)
    assert not at.error
    [created] = texts(at, "success")
    found = re.fullmatch(r"Experiment #(\d+) \*\*my sweep\*\* created with 2 runs\.", created)
    assert found, created
    experiment = dashboard.api.call("GET", f"/experiments/{found[1]}")
    first, second = (run["id"] for run in experiment["runs"])
    assert [link.proto.label for link in at.get("page_link")] == [
        "Watch them on the Runs page",
        f"Open run #{first} (tap, seed 41)",
        f"Open run #{second} (tap, seed 42)",
    ]
    assert [run["total_rounds"] for run in experiment["runs"]] == [3, 3]


# -- submit: hyperparameters and sweeps -----------------------------------------------------------


def test_sweep_preview_counts_algorithms_times_seeds(open_page: OpenPage) -> None:
    at = open_page(SUBMIT)
    assert "**1 run** will be queued" in texts(at, "info")[0]
    at.multiselect[0].set_value(["tap", "fedavg"])
    at.text_input[1].input("41, 42, 43").run()
    assert texts(at, "info")[0].startswith("**6 runs** will be queued: tap, fedavg for seeds")


def test_hyperparameter_errors_land_under_their_fields(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    before = experiments_total(dashboard)
    at = open_page(SUBMIT)
    at.number_input(key="submit_clients_per_round").set_value(10)
    at.number_input(key="submit_kd_lambda").set_value(-1.0)
    submit(at)
    assert "greater than or equal to 0" in column_with(at, "λ (distillation weight)").error[0].value
    assert not column_with(at, "Rounds").error
    # The API checks the whole config once every field is valid: the demo has 7 clients.
    at.number_input(key="submit_kd_lambda").set_value(0.01)
    submit(at)
    assert "exceeds the scenario's 7 clients" in column_with(at, "Clients per round").error[0].value
    assert not column_with(at, "λ (distillation weight)").error
    assert experiments_total(dashboard) == before  # nothing was created


def test_a_sweep_over_algorithms_and_seeds_sends_every_hyperparameter(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    at = open_page(SUBMIT)
    at.text_input[0].input("every hyperparameter")
    at.multiselect[0].set_value(["tap", "local"])
    at.text_input[1].input("1 2")
    for key, value in (
        ("rounds", 2),
        ("clients_per_round", 3),
        ("local_steps", 2),
        ("post_iterations", 1),
        ("eval_every", 1),
    ):
        at.number_input(key=f"submit_{key}").set_value(value)
    at.number_input(key="submit_kd_lambda").set_value(0.01)
    at.number_input(key="submit_margin_image_classification").set_value(0.02)
    submit(at)
    assert not at.error
    experiment_id = re.search(r"Experiment #(\d+)", texts(at, "success")[0])[1]  # type: ignore[index]
    runs = dashboard.api.call("GET", f"/experiments/{experiment_id}")["runs"]
    assert [(r["algorithm"], r["seed"]) for r in runs] == [
        ("tap", 1),
        ("tap", 2),
        ("local", 1),
        ("local", 2),
    ]
    config = dashboard.api.call("GET", f"/runs/{runs[0]['id']}")["config"]
    assert config["rounds"] == 2 and config["local_steps"] == 2 and config["eval_every"] == 1
    assert config["clients_per_round"] == 3 and config["post_iterations"] == 1
    assert config["kd_lambda"] == 0.01
    assert config["margins"]["image_classification"] == 0.02
