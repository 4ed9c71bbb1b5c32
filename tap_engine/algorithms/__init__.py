"""Federated algorithms, each a small strategy over the shared loop in ``tap_engine.runner``."""

from tap_engine.algorithms.base import Algorithm
from tap_engine.algorithms.disentafl import DisentAFL, DisentAFLFineTuned
from tap_engine.algorithms.fedavg import FedAvg, FedAvgFineTuned, FedAvgFineTunedTwice
from tap_engine.algorithms.local import Local
from tap_engine.algorithms.tap import Tap, TapNoKD

REGISTRY: dict[str, type[Algorithm]] = {
    cls.name: cls
    for cls in (
        Tap,
        TapNoKD,
        FedAvg,
        FedAvgFineTuned,
        FedAvgFineTunedTwice,
        DisentAFL,
        DisentAFLFineTuned,
        Local,
    )
}

__all__ = ["REGISTRY", "Algorithm"]
