"""A sweep over ``pairs`` expands to one run per combination, each on its variant, and a
value the scenario cannot give is refused naming the sweep's key."""

from __future__ import annotations

import pytest

from backend.schemas import ExperimentCreate
from backend.services.experiments import SubmissionError, resolve_runs
from tap_engine.pairs import present_pairs


def test_a_pairs_sweep_expands_to_every_combination_each_on_its_variant() -> None:
    body = ExperimentCreate(
        preset="demo",
        sweep={"pairs": [1, 2, 3, 4], "algorithm": ["tap", "fedavg"], "seed": [1, 2, 3]},
        overrides={"eval_every": 12},
    )
    runs = resolve_runs(body)
    assert len(runs) == 24
    combos = {(c["pairs"], c["algorithm"], c["seed"]) for _, c in runs}
    assert len(combos) == 24
    for config, combo in runs:
        assert config.pairs == combo["pairs"] and config.algorithm == combo["algorithm"]
        assert config.seed == combo["seed"] and config.eval_every == 12
        assert len(present_pairs(config.scenario.clients)) == combo["pairs"]
        assert len(config.scenario.clients) == 7


def test_a_pairs_value_beyond_the_scenario_is_refused_at_its_sweep_key() -> None:
    body = ExperimentCreate(preset="demo", sweep={"pairs": [4, 5]})
    with pytest.raises(SubmissionError) as refused:
        resolve_runs(body)
    (error,) = refused.value.errors
    assert error["loc"] == ["body", "sweep", "pairs"]
    assert "pairs (5) exceeds" in error["msg"]
