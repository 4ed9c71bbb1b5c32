"""Evaluation phase time against its forward floor: one bare model forward per evaluated
example at the eval batch size (the models of the last round, on the full sets).

    python benchmarks/evaluation.py [preset] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import time
from types import SimpleNamespace

import torch

from tap_engine.config import resolve_config
from tap_engine.runner import Evaluator, build_engine


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("preset", nargs="?", default="demo")
    parser.add_argument("--set", action="append", default=[], help="key=value overrides")
    args = parser.parse_args()
    overrides = dict(s.split("=", 1) for s in args.set)
    config = resolve_config(args.preset, None, {"device": "cpu", **overrides})
    engine = build_engine(config)
    algorithm = engine.new_algorithm()
    events: list = []
    evaluator = Evaluator(engine, events.append)
    ctx = SimpleNamespace(round=config.rounds, stage="fl", should_stop=lambda: False)  # full sets
    started = time.perf_counter()
    for client in engine.clients:
        evaluator.evaluate(client.client, algorithm.eval_states(client.client), ctx)
    phase = time.perf_counter() - started

    floor, examples = 0.0, 0
    with torch.no_grad():
        for client in engine.clients:
            for state in algorithm.eval_states(client.client).values():
                engine.trainer.params.load(state, engine.components[client.client])
                for task in client.tasks:
                    info = engine.infos[task.name]
                    for pool in (
                        evaluator.local_full[(client.client, task.name)],
                        evaluator.pooled_full[task.name],
                    ):
                        started = time.perf_counter()
                        for index in torch.arange(len(pool)).split(config.eval_batch_size):
                            engine.model(info, pool.batch(index, engine.device))
                        floor += time.perf_counter() - started
                        examples += len(pool)
    print(
        f"evaluation phase: {phase:.2f} s; forward floor ({examples} example forwards, "
        f"one per model and set, no reuse): {floor:.2f} s; ratio {phase / floor:.2f}"
    )


if __name__ == "__main__":
    main()
