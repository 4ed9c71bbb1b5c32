from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from backend.models import (
    Metric,
    Replacement,
    RoundTraffic,
    Run,
    TrainingLoss,
    TrainingStepLoss,
)
from backend.services.events import record_event
from tap_engine import events as ev
from tests.backend.conftest import add_run


def _evaluation(value: float, **changes: object) -> ev.Evaluation:
    fields = dict(
        round=2,
        stage="fl",
        client=3,
        task="digits",
        model="personal",
        split="local",
        metric="accuracy",
        value=value,
        n=40,
    )
    return ev.Evaluation(**{**fields, **changes})


def _record(sessions: sessionmaker[Session], run_id: int, *events: ev.Event) -> None:
    for event in events:
        with sessions() as session:
            record_event(session, run_id, event)
            session.commit()


def test_the_same_evaluation_twice_is_one_row_with_the_latest_value(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        run_id = add_run(session).id
    _record(sessions, run_id, _evaluation(0.5), _evaluation(0.75))
    with sessions() as session:
        rows = session.scalars(select(Metric)).all()
        assert [(r.value, r.n, r.client, r.round) for r in rows] == [(0.75, 40, 3, 2)]


def test_evaluations_differing_in_any_key_field_are_separate_rows(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        run_id = add_run(session).id
        other_run = add_run(session).id
    variants = [
        {},
        {"round": 3},
        {"stage": "post"},
        {"client": 4},
        {"task": "t2"},
        {"model": "global"},
        {"split": "pooled"},
        {"metric": "loss"},
    ]
    _record(sessions, run_id, *(_evaluation(0.1, **v) for v in variants))
    _record(sessions, other_run, _evaluation(0.1))
    with sessions() as session:
        assert session.query(Metric).filter_by(run_id=run_id).count() == len(variants)
        assert session.query(Metric).filter_by(run_id=other_run).count() == 1


def test_local_training_is_one_loss_row_per_task_and_repeats_do_not_duplicate(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        run_id = add_run(session).id
    event = ev.LocalTraining(
        round=1, client=4, model="global", steps=30, losses={"cls": 2.0, "gen": 0.5}
    )
    _record(sessions, run_id, event, event)
    with sessions() as session:
        rows = session.scalars(select(TrainingLoss).order_by(TrainingLoss.task)).all()
        assert [(r.task, r.loss, r.steps, r.stage) for r in rows] == [
            ("cls", 2.0, 30, "fl"),
            ("gen", 0.5, 30, "fl"),
        ]


def _step(step: int, kd: float, **changes: object) -> ev.TrainingStep:
    fields: dict[str, object] = {"round": 6, "stage": "post", "client": 2, "model": "final"}
    fields |= {"step": step, "micro_batches": 4, "losses": {"vqa": 1.5, "cls": 0.5}}
    fields["extra_losses"] = {"kd": {"vqa": kd, "cls": kd / 2}}
    return ev.TrainingStep.model_validate({**fields, **changes})


def _step_rows(sessions: sessionmaker[Session]) -> list[tuple[object, ...]]:
    with sessions() as session:
        order = (TrainingStepLoss.model, TrainingStepLoss.step, TrainingStepLoss.term)
        rows = session.scalars(
            select(TrainingStepLoss).order_by(*order, TrainingStepLoss.task)
        ).all()
        return [(r.model, r.step, r.term, r.task, r.value, r.micro_batches) for r in rows]


def test_a_training_step_is_a_row_per_task_loss_and_per_term_and_task(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        run_id = add_run(session).id
    _record(sessions, run_id, _step(1, kd=0.002))
    assert _step_rows(sessions) == [
        ("final", 1, "kd", "cls", 0.001, 4),
        ("final", 1, "kd", "vqa", 0.002, 4),
        ("final", 1, "task", "cls", 0.5, 4),
        ("final", 1, "task", "vqa", 1.5, 4),
    ]
    with sessions() as session:
        row = session.scalars(select(TrainingStepLoss)).first()
        assert row is not None
        assert (row.run_id, row.stage, row.round, row.client) == (run_id, "post", 6, 2)


def test_a_repeated_training_step_replaces_its_rows_and_other_steps_are_kept(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        run_id = add_run(session).id
    teacher = _step(1, kd=0.0, model="global_ft", extra_losses={})
    # A batch-level term (task ""), as DisentAFL adds its orthogonality.
    batch = _step(2, kd=0.0, losses={}, extra_losses={"orthogonality": {"": 0.25}})
    _record(sessions, run_id, _step(1, kd=0.002), teacher, batch, _step(1, kd=0.004))
    assert _step_rows(sessions) == [
        ("final", 1, "kd", "cls", 0.002, 4),
        ("final", 1, "kd", "vqa", 0.004, 4),  # the resumed run's value
        ("final", 1, "task", "cls", 0.5, 4),
        ("final", 1, "task", "vqa", 1.5, 4),
        ("final", 2, "orthogonality", "", 0.25, 4),
        ("global_ft", 1, "task", "cls", 0.5, 4),
        ("global_ft", 1, "task", "vqa", 1.5, 4),
    ]


def test_replacements_are_stored_once_per_round_client_and_task(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        run_id = add_run(session).id
    event = ev.Replacement(
        round=2,
        client=1,
        task="cls",
        global_loss=1.0,
        personal_loss=0.5,
        margin=0.5,
        parameters_copied=1234,
    )
    _record(sessions, run_id, event, event)
    with sessions() as session:
        [row] = session.scalars(select(Replacement)).all()
        assert (row.client, row.task, row.parameters_copied, row.margin) == (1, "cls", 1234, 0.5)


def test_a_round_repeated_after_a_resume_does_not_count_its_traffic_twice(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        run_id = add_run(session).id
    big = 5 * 2**31  # a large model's round: more than a 32-bit column holds

    def sent(direction: str, nbytes: int, client: int = 1) -> ev.RoundTraffic:
        return ev.RoundTraffic(
            round=2, client=client, direction=direction, bytes=nbytes, parameters=nbytes // 4
        )

    _record(sessions, run_id, sent("down", big), sent("up", 8), sent("up", big), sent("up", 8, 2))
    with sessions() as session:
        rows = session.scalars(select(RoundTraffic).order_by(RoundTraffic.id)).all()
        got = [(r.round, r.client, r.direction, r.bytes) for r in rows]
    assert got == [(2, 1, "down", big), (2, 1, "up", big), (2, 2, "up", 8)]


def test_progress_and_round_events_update_the_run_row(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        run_id = add_run(session).id
    _record(
        sessions,
        run_id,
        ev.RoundStarted(round=3, participants=[0, 2], lr=0.01),
        ev.Progress(stage="fl", round=3, total_rounds=8, fraction=0.4, elapsed_s=10, eta_s=15),
    )
    with sessions() as session:
        run = session.get(Run, run_id)
        assert run is not None
        progress = (run.stage, run.round, run.total_rounds, run.progress, run.eta_s)
        assert progress == ("fl", 3, 8, 0.4, 15)
        assert run.heartbeat_at is not None and run.heartbeat_at.tzinfo is not None
        assert run.status == "queued"  # events never change the status


def test_a_diverged_run_keeps_its_non_finite_values_as_nulls(
    sessions: sessionmaker[Session],
) -> None:
    """NaN and infinity are stored as NULL (not a finite number) on both databases: SQLite
    turns NaN into NULL anyway, and a NOT NULL column then refused the whole event."""
    nan, inf = float("nan"), float("inf")
    with sessions() as session:
        run_id = add_run(session).id
    _record(
        sessions,
        run_id,
        _evaluation(nan),
        _evaluation(inf, metric="loss"),
        ev.LocalTraining(
            round=1, stage="fl", client=3, model="global", losses={"digits": nan}, steps=2
        ),
        ev.TrainingStep(
            stage="post",
            round=2,
            client=3,
            model="final",
            step=1,
            micro_batches=1,
            losses={"digits": nan},
            extra_losses={"kd": {"digits": -inf}},
        ),
    )
    with sessions() as session:
        metrics = session.execute(select(Metric.metric, Metric.value).order_by(Metric.metric))
        assert list(metrics) == [("accuracy", None), ("loss", None)]
        assert session.scalars(select(TrainingLoss.loss)).all() == [None]
        steps = session.execute(select(TrainingStepLoss.term, TrainingStepLoss.value))
        assert sorted(steps) == [("kd", None), ("task", None)]
