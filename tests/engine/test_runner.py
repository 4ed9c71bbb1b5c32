import pytest

from tap_engine.config import resolve_config
from tap_engine.events import Evaluation, LocalTraining, RunFinished
from tap_engine.runner import run

SMALL = {"rounds": 4, "local_steps": 8, "eval_every": 1}


def _run(tmp_path, name, algorithm="fedavg", should_stop=lambda: False, **extra):
    events = []
    result = run(
        resolve_config("demo", algorithm, {**SMALL, **extra}),
        events.append,
        tmp_path / name,
        should_stop,
    )
    return result, events


def _finals(events):
    return {
        (e.client, e.task, e.model, e.split, e.metric): e.value
        for e in events
        if isinstance(e, Evaluation) and e.round == SMALL["rounds"]
    }


@pytest.mark.parametrize("algorithm", ["fedavg", "local"])
def test_every_client_is_evaluated_on_local_and_pooled_data_each_round(tmp_path, algorithm):
    result, events = _run(tmp_path, algorithm, algorithm)
    assert result.status == "succeeded"
    evals = [e for e in events if isinstance(e, Evaluation)]
    config = resolve_config("demo")
    for r in range(1, SMALL["rounds"] + 1):
        for c, client in enumerate(config.scenario.clients):
            for task in client.tasks:
                splits = {
                    e.split for e in evals if (e.round, e.client, e.task) == (r, c, task.task)
                }
                assert splits == {"local", "pooled"}
    assert isinstance(events[-1], RunFinished)


def test_training_loss_falls_and_accuracy_beats_chance(tmp_path):
    _, events = _run(tmp_path, "learn", rounds=8, local_steps=30)
    losses = [
        e.losses["digits_image_classification"]
        for e in events
        if isinstance(e, LocalTraining) and "digits_image_classification" in e.losses
    ]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.2
    final = [
        e.value
        for e in events
        if isinstance(e, Evaluation)
        and e.round == 8
        and e.metric == "accuracy"
        and e.split == "pooled"
    ]
    assert min(final) > 0.3  # 10 classes: chance is 0.1


def test_same_seed_gives_identical_results(tmp_path):
    _, a = _run(tmp_path, "a")
    _, b = _run(tmp_path, "b")
    assert _finals(a) == _finals(b)
    _, c = _run(tmp_path, "c", seed=7)
    assert _finals(a) != _finals(c)


def test_a_stopped_run_resumes_to_the_same_result(tmp_path):
    _, uninterrupted = _run(tmp_path, "full")
    calls = 0

    def stop_in_round_three() -> bool:
        nonlocal calls
        calls += 1
        return calls > 2 * 3 * SMALL["local_steps"] + 5  # two rounds of 3 clients, then a bit

    result, _ = _run(tmp_path, "resumed", should_stop=stop_in_round_three)
    assert result.status == "cancelled" and result.rounds_completed == 2
    result, second = _run(tmp_path, "resumed")
    assert result.status == "succeeded"
    assert second[0].resumed_from_round == 2
    assert _finals(second) == _finals(uninterrupted)


def test_a_checkpoint_of_another_config_is_not_resumed(tmp_path):
    _run(tmp_path, "x", rounds=1)
    with pytest.raises(ValueError, match="different config"):
        _run(tmp_path, "x", rounds=2)
