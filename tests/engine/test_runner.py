import pytest

from tap_engine.config import resolve_config
from tap_engine.events import (
    Evaluation,
    LocalTraining,
    Replacement,
    RunFinished,
    TrainingStep,
    parse_event,
)
from tap_engine.runner import resolve_device, run, storage_for
from tests.engine.conftest import SMALL


def _run(tmp_path, name, algorithm="fedavg", should_stop=lambda: False, **extra):
    events = []
    config = resolve_config("demo", algorithm, {**SMALL, **extra})
    result = run(config, events.append, tmp_path / name, should_stop)
    return result, events


def _finals(events):
    return {
        (e.stage, e.client, e.task, e.model, e.split, e.metric): e.value
        for e in events
        if isinstance(e, Evaluation) and e.round == SMALL["rounds"]
    }


def test_tap_evaluates_global_and_personal_models_of_every_client_every_round(tmp_path):
    result, events = _run(tmp_path, "tap", "tap")
    assert result.status == "succeeded"
    assert isinstance(events[-1], RunFinished)
    evals = [e for e in events if isinstance(e, Evaluation)]
    config = resolve_config("demo")
    for r in range(1, SMALL["rounds"] + 1):
        for c, client in enumerate(config.scenario.clients):
            for task in client.tasks:
                seen = {
                    (e.model, e.split)
                    for e in evals
                    if (e.stage, e.round, e.client, e.task) == ("fl", r, c, task.task)
                }
                # text generation also reports its chance level: the constant answer
                models = ("global", "personal") + (
                    ("constant",) if task.family == "text_generation" else ()
                )
                assert seen == {(m, s) for m in models for s in ("local", "pooled")}
    # after stage 2: FedAvg, FedAvg + fine-tuning and TAP's final model, side by side
    post = {(e.client, e.model) for e in evals if e.stage == "post" and e.model != "constant"}
    assert post == {
        (c, m)
        for c in range(len(config.scenario.clients))
        for m in ("global", "global_ft", "final")
    }
    assert any(isinstance(e, Replacement) for e in events)
    kd = [
        e
        for e in events
        if isinstance(e, LocalTraining) and e.stage == "post" and e.model == "final"
    ]
    assert kd and all(e.extra_losses["kd"] > 0 for e in kd)
    # every stage-2 step is an event: the student's carries its KD term per task
    steps = [e for e in events if isinstance(e, TrainingStep)]
    assert {(e.client, e.model) for e in steps} == {
        (c, m) for c in range(len(config.scenario.clients)) for m in ("global_ft", "final")
    }
    student = [e for e in steps if e.model == "final"]
    assert len(student) == len(config.scenario.clients) * SMALL["post_iterations"]
    assert all(set(e.extra_losses["kd"]) == set(e.losses) for e in student)
    assert not any(e.extra_losses for e in steps if e.model == "global_ft")
    # Every event survives its JSON line, the first replacement's +inf history included.
    assert any(e.personal_loss == float("inf") for e in events if isinstance(e, Replacement))
    assert [parse_event(e.model_dump_json()) for e in events] == events


def test_training_loss_falls(tmp_path):
    _, events = _run(
        tmp_path, "learn", "local", rounds=4, local_steps=8, batch_size=16, clients_per_round=7
    )
    task = "digits_image_classification"

    def mean_loss(round_: int) -> float:
        # clients 0 and 1 hold five digits each; they learn visibly within 32 steps
        losses = [
            e.losses[task]
            for e in events
            if isinstance(e, LocalTraining) and e.round == round_ and e.client in (0, 1)
        ]
        assert len(losses) == 2
        return sum(losses) / 2

    assert mean_loss(4) < mean_loss(1) - 0.2


def test_same_seed_gives_identical_results(tmp_path):
    _, a = _run(tmp_path, "a")
    _, b = _run(tmp_path, "b")
    assert _finals(a) == _finals(b)
    _, c = _run(tmp_path, "c", seed=7)
    assert _finals(a) != _finals(c)


def test_a_stopped_tap_run_resumes_to_the_same_result(tmp_path):
    _, uninterrupted = _run(tmp_path, "full", "tap")
    events = []

    def stop_in_round_three() -> bool:  # after its first client's training
        return any(isinstance(e, LocalTraining) and e.round == 3 for e in events)

    config = resolve_config("demo", "tap", SMALL)
    result = run(config, events.append, tmp_path / "resumed", stop_in_round_three)
    assert result.status == "cancelled" and result.rounds_completed == 2
    result, second = _run(tmp_path, "resumed", "tap")
    assert result.status == "succeeded"
    assert second[0].resumed_from_round == 2
    assert _finals(second) == _finals(uninterrupted)


def test_a_checkpoint_of_another_config_is_not_resumed(tmp_path):
    _run(tmp_path, "x", rounds=1)
    with pytest.raises(ValueError, match="another config"):
        _run(tmp_path, "x", rounds=2)


def test_a_run_keeps_backbones_and_data_in_the_cache_folder_it_is_given(tmp_path, monkeypatch):
    monkeypatch.setenv("TAPFL_CACHE_DIR", str(tmp_path / "from-env"))  # not the engine's to read
    cache = tmp_path / "cache"
    config = resolve_config("demo", "fedavg", {**SMALL, "rounds": 1, "post_iterations": 1})
    result = run(config, lambda event: None, tmp_path / "run", cache_dir=cache)
    assert result.status == "succeeded"
    assert list((cache / "data").glob("*.pt")) and list((cache / "backbones").iterdir())
    assert not (tmp_path / "from-env").exists()


def test_the_state_memory_budget_is_mib_and_a_negative_one_fails_before_any_work(tmp_path):
    assert storage_for(tmp_path, None).budget_bytes is None
    assert storage_for(tmp_path, 1.5).budget_bytes == 3 * 2**19
    assert storage_for(tmp_path, 0).directory == tmp_path / "client_states"
    config = resolve_config("demo", "fedavg", SMALL)
    with pytest.raises(ValueError, match=r"state_memory_budget_mb: -1 MiB"):
        run(config, lambda event: None, tmp_path / "run", state_memory_budget_mb=-1)
    assert not (tmp_path / "run").exists()


def test_auto_device_picks_cuda_when_present(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(RuntimeError, match="no CUDA device"):
        resolve_device("cuda")


def test_one_tap_run_reports_exactly_the_fedavg_and_fedavg_ft_models(tmp_path):
    _, tap = _run(tmp_path, "tap", "tap")
    _, fedavg = _run(tmp_path, "fedavg", "fedavg")
    _, fedavg_ft = _run(tmp_path, "fedavg_ft", "fedavg_ft")

    def post(events, model):
        return {
            (e.client, e.task, e.split, e.metric): e.value
            for e in events
            if isinstance(e, Evaluation) and e.stage == "post" and e.model == model
        }

    assert post(tap, "global") == post(fedavg, "final")
    assert post(tap, "global_ft") == post(fedavg_ft, "final")
    assert post(tap, "final") != post(tap, "global_ft")


def test_each_model_is_evaluated_once_per_set_and_only_the_last_round_reads_full_sets(
    tmp_path, monkeypatch
):
    import tap_engine.runner as runner
    from tap_engine.algorithms.local import Local

    stage2_reads = []
    evaluate_task, post_fl = runner.evaluate_task, Local.post_fl

    def counted(model, info, pool, *args):
        stage2_reads.extend(["read"] * bool(stage2_started))
        return evaluate_task(model, info, pool, *args)

    stage2_started = []

    def started(self, ctx, client):
        stage2_started.append(client)
        return post_fl(self, ctx, client)

    monkeypatch.setattr(runner, "evaluate_task", counted)
    monkeypatch.setattr(Local, "post_fl", started)
    result, events = _run(tmp_path, "local", "local")
    assert result.status == "succeeded"
    evals = [e for e in events if isinstance(e, Evaluation) and e.model != "constant"]
    cap, last = SMALL["eval_max_samples"], SMALL["rounds"]
    sizes = {(e.client, e.task, e.split): e.n for e in evals if e.stage == "post"}
    assert max(sizes.values()) > cap  # the final evaluation reads the full sets
    for e in evals:
        full = sizes[(e.client, e.task, e.split)]
        assert e.n == (full if e.stage == "post" or e.round == last else min(cap, full))
    # Stage 2 of Local delivers the last round's personal model: its metrics are reused,
    # equal to the last round's, and no set is read again for it.
    final = {(e.client, e.task, e.split, e.metric): e.value for e in evals if e.stage == "post"}
    fl_last = {
        (e.client, e.task, e.split, e.metric): e.value
        for e in evals
        if e.stage == "fl" and e.round == last
    }
    assert final == fl_last
    assert stage2_started and not stage2_reads


def test_a_stop_asked_for_during_evaluation_ends_the_run_before_the_next_evaluation(tmp_path):
    # A stage 2 evaluation can take minutes: the run does not wait for all of it to stop.
    events = []
    config = resolve_config("demo", "tap", {**SMALL, "rounds": 2})

    def evaluated() -> bool:
        return any(isinstance(e, Evaluation) for e in events)

    result = run(config, events.append, tmp_path / "stopped", evaluated)
    assert result.status == "cancelled" and result.rounds_completed == 0
    computed = {(e.client, e.task, e.model, e.split) for e in events if isinstance(e, Evaluation)}
    assert len(computed) == 1
