"""The Submit page, rendered by Streamlit's AppTest against the real API on loopback:
the form, the API's preview of what it would queue, its 422s under the fields (or the
line of the extra overrides), and the experiments it creates."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from streamlit.testing.v1 import AppTest

from tests.dashboard.conftest import Dashboard

OpenPage = Callable[..., AppTest]
SUBMIT = "app_pages/submit.py"
NUMBER_FIELDS = (
    "rounds",
    "clients_per_round",
    "local_steps",
    "post_iterations",
    "kd_lambda",
    "eval_every",
)


def texts(at: AppTest, kind: str) -> list[str]:
    return [str(element.value) for element in getattr(at, kind)]


def experiments_total(dashboard: Dashboard) -> int:
    return dashboard.api.call("GET", "/experiments", params={"limit": 1})["total"]


def column_with(at: AppTest, label: str):  # type: ignore[no-untyped-def]
    """The column block holding the widget labelled ``label``."""
    for column in at.columns:
        widgets = [*column.number_input, *column.text_input, *column.selectbox]
        if any(w.label == label for w in [*widgets, *column.multiselect]):
            return column
    raise AssertionError(f"no column holds {label!r}")


def errors_under_extra_overrides(at: AppTest) -> list[str]:
    """The error shown right below the "Extra overrides" box, if any."""
    children = list(at.main.children.values())
    [index] = [i for i, c in enumerate(children) if getattr(c, "label", "") == "Extra overrides"]
    below = children[index + 1]
    return [str(below.value)] if below.type == "error" else []


def extra(at: AppTest, *lines: str) -> AppTest:
    at.text_area(key="submit_extra").input("\n".join(lines)).run()
    assert not at.exception
    return at


def submit(at: AppTest) -> AppTest:
    at.button(key="submit").click().run()
    assert not at.exception
    return at


def created_id(at: AppTest) -> int:
    found = re.search(r"Experiment #(\d+)", texts(at, "success")[0])
    assert found, texts(at, "success")
    return int(found[1])


def first_config(dashboard: Dashboard, experiment_id: int) -> dict[str, Any]:
    runs = dashboard.api.call("GET", f"/experiments/{experiment_id}")["runs"]
    return dashboard.api.call("GET", f"/runs/{runs[0]['id']}")["config"]


# -- the form ------------------------------------------------------------------------------------


def test_every_number_field_shows_the_presets_value_and_follows_the_preset(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    presets = {p["name"]: p for p in dashboard.api.call("GET", "/catalog")["presets"]}
    at = open_page(SUBMIT)
    assert at.selectbox[0].label == "Preset" and len(presets) > 1
    for name in at.selectbox[0].options:
        at.selectbox[0].set_value(name).run()
        defaults = presets[name]["defaults"]
        for key in NUMBER_FIELDS:
            placeholder = at.number_input(key=f"submit_{key}").proto.placeholder
            assert placeholder == f"the preset's ({defaults[key]:g})", (name, key)
        for family, margin in defaults["margins"].items():
            placeholder = at.number_input(key=f"submit_margin_{family}").proto.placeholder
            assert placeholder == f"the preset's ({margin:g})", (name, family)
        assert at.text_input[1].proto.placeholder == f"the preset's ({defaults['seed']})"


def test_submit_offers_the_algorithms_of_the_apis_catalog_and_nothing_else(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    catalog = dashboard.api.call("GET", "/catalog")
    at = open_page(SUBMIT)
    algorithm = next(w for w in at.multiselect if w.label == "Algorithm")
    assert list(algorithm.options) == [a["name"] for a in catalog["algorithms"]]
    # No free text: a prefix typed and Enter picks among these, it never adds a new name.
    assert not algorithm.proto.accept_new_options
    assert dashboard.asked("/catalog")


# -- the preview -----------------------------------------------------------------------------------


def test_the_api_previews_the_runs_and_the_config_before_anything_is_queued(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    before = experiments_total(dashboard)
    at = open_page(SUBMIT)
    assert "**1 run** will be queued" in texts(at, "info")[0]
    at.multiselect[0].set_value(["tap", "fedavg"])
    at.text_input[1].input("7, 8, 9")
    at.number_input(key="submit_rounds").set_value(3).run()
    assert texts(at, "info")[0].startswith("**6 runs** will be queued: tap, fedavg for seeds")
    preview = dashboard.api.requests(since=dashboard.log_start)[-1]
    assert preview.path.endswith("/experiments/preview")
    # The first run's resolved config: what it changes from the preset, then all of it.
    [changed] = [d.value for d in at.dataframe if list(d.value) == ["key", "preset", "this run"]]
    rows = dict(zip(changed["key"], changed["this run"], strict=True))
    assert rows["rounds"] == "3" and rows["seed"] == "7"
    assert "algorithm" not in rows  # the preset's own: unchanged fields are not listed
    assert at.json[0].value and '"rounds": 3' in at.json[0].value
    assert experiments_total(dashboard) == before  # a preview queues nothing
    assert not at.button(key="submit").disabled


def test_an_error_about_the_request_as_a_whole_shows_above_submit(open_page: OpenPage) -> None:
    at = open_page(SUBMIT)
    at.text_input[1].input(" ".join(str(seed) for seed in range(257))).run()  # one too many
    assert texts(at, "error") == [
        "`sweep`: the sweep gives 257 runs; at most 256 fit in one experiment"
    ]
    assert at.button(key="submit").disabled  # nothing to queue


# -- the API's 422s under the fields ---------------------------------------------------------------


def test_the_apis_422_lands_under_the_field_and_submit_waits(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    before = experiments_total(dashboard)
    at = open_page(SUBMIT)
    at.number_input(key="submit_rounds").set_value(0).run()
    rounds = column_with(at, "Rounds")
    assert len(rounds.error) == 1
    assert "greater than or equal to 1" in rounds.error[0].value
    # Under Rounds, not at the top: the other column and the page's general slot stay clean.
    assert not column_with(at, "Seed").error
    assert not errors_under_extra_overrides(at)
    assert at.button(key="submit").disabled
    assert experiments_total(dashboard) == before  # nothing was created


def test_hyperparameter_errors_land_under_their_fields(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    before = experiments_total(dashboard)
    at = open_page(SUBMIT)
    at.number_input(key="submit_clients_per_round").set_value(10)
    at.number_input(key="submit_kd_lambda").set_value(-1.0).run()
    assert "greater than or equal to 0" in column_with(at, "λ (distillation weight)").error[0].value
    assert not column_with(at, "Rounds").error
    # The API checks the whole config once every field is valid: the demo has 7 clients.
    at.number_input(key="submit_kd_lambda").set_value(0.01).run()
    assert "exceeds the scenario's 7 clients" in column_with(at, "Clients per round").error[0].value
    assert not column_with(at, "λ (distillation weight)").error
    assert experiments_total(dashboard) == before  # nothing was created


def test_a_negative_margin_is_refused_under_its_field(open_page: OpenPage) -> None:
    at = open_page(SUBMIT)
    at.number_input(key="submit_margin_image_classification").set_value(-0.01).run()
    margin = column_with(at, "Margin: image classification")
    assert "greater than or equal to 0" in margin.error[0].value
    assert at.button(key="submit").disabled


def test_a_seed_that_is_not_a_number_is_refused_before_asking_the_api(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    at = open_page(SUBMIT)
    start = len(dashboard.queries("/experiments/preview"))
    at.text_input[1].input("forty-two").run()
    assert "whole numbers" in column_with(at, "Seed").error[0].value
    assert at.button(key="submit").disabled
    assert len(dashboard.queries("/experiments/preview")) == start


# -- extra overrides -----------------------------------------------------------------------------


def test_extra_overrides_reach_the_runs_config(open_page: OpenPage, dashboard: Dashboard) -> None:
    at = open_page(SUBMIT)
    at.number_input(key="submit_rounds").set_value(3)
    extra(
        at,
        "# a comment, and a blank line",
        "",
        "backbone.tiny_hidden_size=16",
        "margins.image_classification=0.02",
        "rounds=2",  # wins over the Rounds field
        "peak_lr=1e-3",
    )
    assert not errors_under_extra_overrides(at)
    submit(at)
    config = first_config(dashboard, created_id(at))
    assert config["backbone"]["tiny_hidden_size"] == 16
    assert config["margins"]["image_classification"] == 0.02
    assert config["rounds"] == 2 and config["peak_lr"] == 0.001


def test_a_bad_extra_override_is_named_by_its_line_under_the_box(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    before = experiments_total(dashboard)
    at = extra(open_page(SUBMIT), "rounds=2", "backbone.hidden_sise=3")
    [error] = errors_under_extra_overrides(at)
    assert error.startswith("line 2 · `backbone.hidden_sise`:") and "not permitted" in error
    assert not column_with(at, "Rounds").error
    assert at.button(key="submit").disabled

    # An algorithm the picker cannot offer still meets the API's 422, under its line.
    extra(at, "algorithm=fedprox")
    [error] = errors_under_extra_overrides(at)
    assert error.startswith("line 1 · `algorithm`:")
    assert "unknown algorithm 'fedprox'; choose one of tap" in error
    assert not column_with(at, "Algorithm").error

    extra(at, "margins.text_generation=-1")
    [error] = errors_under_extra_overrides(at)
    assert "`margins.text_generation`" in error and "greater than or equal to 0" in error
    assert experiments_total(dashboard) == before


def test_lines_that_are_not_key_value_are_refused_before_asking_the_api(
    open_page: OpenPage,
) -> None:
    at = extra(open_page(SUBMIT), "rounds 3", "seed=1", "seed=2", "x=[1,")
    [error] = errors_under_extra_overrides(at)
    assert "line 1: `rounds 3` is not of the form `dotted.key=value`" in error
    assert "line 3: `seed` is already set on line 2" in error
    assert "line 4: the value of `x` is not valid YAML" in error
    assert at.button(key="submit").disabled


# -- submitting ------------------------------------------------------------------------------------


def test_submit_a_seed_sweep_links_each_new_run(open_page: OpenPage, dashboard: Dashboard) -> None:
    at = open_page(SUBMIT)
    at.text_input[0].input("my sweep")
    at.multiselect[0].set_value(["tap"])
    at.text_input[1].input("41, 42")
    at.number_input(key="submit_rounds").set_value(3).run()
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
    at.number_input(key="submit_margin_image_classification").set_value(0.02).run()
    submit(at)
    assert not at.error
    experiment_id = created_id(at)
    runs = dashboard.api.call("GET", f"/experiments/{experiment_id}")["runs"]
    assert [(r["algorithm"], r["seed"]) for r in runs] == [
        ("tap", 1),
        ("tap", 2),
        ("local", 1),
        ("local", 2),
    ]
    config = first_config(dashboard, experiment_id)
    assert config["rounds"] == 2 and config["local_steps"] == 2 and config["eval_every"] == 1
    assert config["clients_per_round"] == 3 and config["post_iterations"] == 1
    assert config["kd_lambda"] == 0.01
    assert config["margins"]["image_classification"] == 0.02


# -- modality-task pairs -------------------------------------------------------------------------


def error_under_pairs(at: AppTest) -> list[str]:
    """The error shown in the slot right below the pairs field and its caption, if any."""
    children = list(at.main.children.values())
    [index] = [
        i for i, c in enumerate(children) if getattr(c, "label", "") == "Modality-task pairs"
    ]
    below = children[index + 2]
    return [str(below.value)] if below.type == "error" else []


def test_the_pairs_field_names_the_presets_pairs_in_their_order(open_page: OpenPage) -> None:
    at = open_page(SUBMIT)
    assert at.text_input(key="submit_pairs").placeholder == "all of the preset's (4)"
    assert any(
        "1 = image:image_classification, 2 = text:text_classification, "
        "3 = image:image_generation, 4 = image+text:text_generation" in text
        for text in texts(at, "caption")
    )


def test_several_pairs_submit_a_pairs_sweep(open_page: OpenPage, dashboard: Dashboard) -> None:
    at = open_page(SUBMIT)
    at.text_input[0].input("pairs sweep")
    at.text_input(key="submit_pairs").input("1, 3")
    at.number_input(key="submit_rounds").set_value(2).run()
    assert any("pairs 1, 3" in text for text in texts(at, "info"))
    submit(at)
    assert not at.error
    runs = dashboard.api.call("GET", f"/experiments/{created_id(at)}")["runs"]
    assert [run["sweep"] for run in runs] == [{"pairs": 1}, {"pairs": 3}]
    configs = [dashboard.api.call("GET", f"/runs/{run['id']}")["config"] for run in runs]
    assert [config["pairs"] for config in configs] == [1, 3]


def test_too_many_pairs_are_refused_under_the_field(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    before = experiments_total(dashboard)
    at = open_page(SUBMIT)
    at.text_input(key="submit_pairs").input("5").run()
    [message] = error_under_pairs(at)
    assert "exceeds the scenario's 4 modality-task pairs" in message
    assert at.button(key="submit").disabled
    assert experiments_total(dashboard) == before


def test_pairs_that_are_not_numbers_are_refused_before_asking_the_api(
    open_page: OpenPage, dashboard: Dashboard
) -> None:
    at = open_page(SUBMIT)
    start = len(dashboard.queries("/experiments/preview"))
    at.text_input(key="submit_pairs").input("two").run()
    assert "whole numbers" in error_under_pairs(at)[0]
    assert len(dashboard.queries("/experiments/preview")) == start
