"""Communication cost: which algorithms send what, per client and round."""

from __future__ import annotations

import pytest

from tap_engine.config import resolve_config
from tap_engine.events import RoundStarted, RoundTraffic
from tap_engine.runner import run
from tap_engine.traffic import cumulative
from tests.engine.conftest import SMALL, build_engine


def _events(tmp_path, algorithm: str) -> list:
    events: list = []
    config = resolve_config("demo", algorithm, {**SMALL, "device": "cpu"})
    run(config, events.append, tmp_path / algorithm)
    return events


@pytest.fixture(scope="module")
def sub_model_bytes() -> dict[int, tuple[int, int]]:
    """Per client: (bytes, scalars) of the trainable tensors of its sub-model."""
    engine = build_engine(algorithm="fedavg")
    params = engine.trainer.params
    out = {}
    for client, components in enumerate(engine.components):
        tensors = [params.params[n] for n in params.names(components)]
        out[client] = (
            sum(t.numel() * t.element_size() for t in tensors),
            sum(t.numel() for t in tensors),
        )
    return out


@pytest.mark.parametrize("algorithm", ["fedavg", "tap"])
def test_every_participant_receives_and_uploads_its_trainable_sub_model(
    tmp_path, algorithm, sub_model_bytes
):
    events = _events(tmp_path, algorithm)
    participants = {e.round: e.participants for e in events if isinstance(e, RoundStarted)}
    traffic = [e for e in events if isinstance(e, RoundTraffic)]
    expected = {
        (round_no, client, direction): sub_model_bytes[client]
        for round_no, clients in participants.items()
        for client in clients
        for direction in ("down", "up")
    }
    got = {(e.round, e.client, e.direction): (e.bytes, e.parameters) for e in traffic}
    assert len(traffic) == len(got)  # one event per round, client and direction
    assert got == expected
    # Stage 2 is local: nothing is sent after the last FL round.
    assert max(e.round for e in traffic) == SMALL["rounds"]
    # The trainable sub-model is a small part of the whole model.
    assert all(0 < b < 50e6 for b, _ in got.values())


def test_local_training_sends_nothing(tmp_path):
    assert not [e for e in _events(tmp_path, "local") if isinstance(e, RoundTraffic)]


def test_cumulative_adds_rounds_per_direction():
    events = [
        RoundTraffic(round=2, client=0, direction="down", bytes=5, parameters=1),
        RoundTraffic(round=1, client=0, direction="down", bytes=3, parameters=1),
        RoundTraffic(round=1, client=1, direction="down", bytes=4, parameters=1),
        RoundTraffic(round=1, client=1, direction="up", bytes=2, parameters=1),
    ]
    assert cumulative(events) == {"down": [(1, 7), (2, 12)], "up": [(1, 2)]}
