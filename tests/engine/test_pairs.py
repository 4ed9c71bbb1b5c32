"""Scenario variants with the first M modality-task pairs (``pairs``): which tasks each
variant of the demo holds, that the kept data is the preset's own, and the checks."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from tap_engine.cli import app
from tap_engine.config import RunConfig, ScenarioSpec, load_preset, resolve_config
from tap_engine.pairs import present_pairs, scenario_pairs, task_pair

DEMO_ORDER = [
    "image:image_classification",
    "text:text_classification",
    "image:image_generation",
    "image+text:text_generation",
]


def dumps(tasks) -> list[dict]:
    return [t.model_dump() for t in tasks]


def test_the_demo_lists_its_four_pairs_in_the_documented_order() -> None:
    assert scenario_pairs(resolve_config("demo").scenario) == DEMO_ORDER


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_a_variant_holds_the_first_m_pairs_and_the_preset_data_otherwise(m: int) -> None:
    full = resolve_config("demo")
    variant = resolve_config("demo", overrides={"pairs": m})
    assert present_pairs(variant.scenario.clients) and set(
        present_pairs(variant.scenario.clients)
    ) == set(DEMO_ORDER[:m])
    assert len(variant.scenario.clients) == len(full.scenario.clients)
    kept_pairs = set(DEMO_ORDER[:m])
    donors = []
    emptied = []
    for original, derived in zip(full.scenario.clients, variant.scenario.clients, strict=True):
        kept = [t for t in original.tasks if task_pair(t) in kept_pairs]
        if kept:
            # Tasks are dropped, never changed: same data, shards, labels and caps.
            assert dumps(derived.tasks) == dumps(kept)
            donors.append(derived)
        else:
            emptied.append(derived)
    for k, client in enumerate(emptied):
        assert dumps(client.tasks) == dumps(donors[k % len(donors)].tasks)
    # Everything but the scenario's clients stays: datasets, budget, the other settings.
    assert variant.scenario.datasets == full.scenario.datasets
    same = variant.model_dump(exclude={"pairs", "scenario"})
    assert same == full.model_dump(exclude={"pairs", "scenario"})


def test_the_one_pair_variant_is_image_classification_on_every_client() -> None:
    variant = resolve_config("demo", overrides={"pairs": 1})
    tasks = [[t.task for t in c.tasks] for c in variant.scenario.clients]
    assert tasks == [["digits_image_classification"]] * 7
    # Clients 3 to 6 lost all their tasks and copied clients 0, 1, 2, 0 in turn.
    labels = [c.tasks[0].parts[0].labels for c in variant.scenario.clients]
    assert labels[3] == [0, 1, 2, 3, 4] and labels[4] == [5, 6, 7, 8, 9]
    assert labels[5] is None and labels[6] == [0, 1, 2, 3, 4]


def test_all_pairs_is_the_preset_itself_and_a_variant_validates_again_unchanged() -> None:
    full = resolve_config("demo")
    assert resolve_config("demo", overrides={"pairs": 4}).scenario == full.scenario
    variant = resolve_config("demo", overrides={"pairs": 2})
    again = RunConfig.model_validate(json.loads(variant.model_dump_json()))
    assert again == variant


def test_too_many_or_too_few_pairs_are_refused_naming_pairs() -> None:
    with pytest.raises(ValidationError) as many:
        resolve_config("demo", overrides={"pairs": 5})
    assert "pairs (5) exceeds the scenario's 4 modality-task pairs" in str(many.value)
    with pytest.raises(ValidationError) as none:
        resolve_config("demo", overrides={"pairs": 0})
    assert none.value.errors()[0]["loc"] == ("pairs",)


def test_without_an_order_the_pairs_come_in_the_order_they_first_appear() -> None:
    data = load_preset("demo")
    del data["scenario"]["pairs_order"]
    scenario = ScenarioSpec.model_validate(data["scenario"])
    assert scenario_pairs(scenario) == [
        "image:image_classification",
        "image:image_generation",
        "text:text_classification",
        "image+text:text_generation",
    ]


def test_a_pair_the_order_does_not_list_comes_after_the_listed_ones() -> None:
    # VQA left out of the order, as when an override adds a task of a new pair
    config = resolve_config("demo", overrides={"scenario.pairs_order": DEMO_ORDER[1:3]})
    assert scenario_pairs(config.scenario) == [
        *DEMO_ORDER[1:3],
        "image:image_classification",
        "image+text:text_generation",
    ]


@pytest.mark.parametrize(
    ("order", "message"),
    [
        ([*DEMO_ORDER, DEMO_ORDER[0]], "listed twice"),
        (["vqa", *DEMO_ORDER], "'vqa' is not a pair"),
    ],
)
def test_a_bad_pairs_order_is_refused(order: list[str], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        resolve_config("demo", overrides={"scenario.pairs_order": order})


def test_presets_show_prints_the_variant() -> None:
    result = CliRunner().invoke(app, ["presets", "show", "demo", "--set", "pairs=2"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["pairs"] == 2
    held = {
        f"{'+'.join(t['modalities'])}:{t['family']}"
        for c in shown["scenario"]["clients"]
        for t in c["tasks"]
    }
    assert held == set(DEMO_ORDER[:2])
