"""Communication cost: the bytes a client receives and uploads in an FL round.

What travels is a state (the trainable tensors of a client's sub-model: LoRA, MoE experts,
heads); the frozen backbone every client already has never does. Counted at each tensor's
own precision, without compression or protocol overhead, as FL papers report it.
"""

from __future__ import annotations

from tap_engine.events import Direction, RoundTraffic
from tap_engine.models.state import State, count, nbytes


def traffic_event(round_no: int, client: int, direction: Direction, state: State) -> RoundTraffic:
    return RoundTraffic(
        round=round_no,
        client=client,
        direction=direction,
        bytes=nbytes(state),
        parameters=count(state),
    )


def cumulative(events: list[RoundTraffic]) -> dict[Direction, list[tuple[int, int]]]:
    """Per direction, (round, bytes sent up to and including that round), rounds ascending."""
    per_round: dict[Direction, dict[int, int]] = {"down": {}, "up": {}}
    for event in events:
        rounds = per_round[event.direction]
        rounds[event.round] = rounds.get(event.round, 0) + event.bytes
    out: dict[Direction, list[tuple[int, int]]] = {}
    for direction, rounds in per_round.items():
        total, series = 0, []
        for round_no in sorted(rounds):
            total += rounds[round_no]
            series.append((round_no, total))
        out[direction] = series
    return out
