"""Federated algorithms, each a small strategy over the shared loop in ``tap_engine.runner``."""

from tap_engine.algorithms.base import Algorithm
from tap_engine.algorithms.fedavg import FedAvg
from tap_engine.algorithms.local import Local

REGISTRY: dict[str, type[Algorithm]] = {cls.name: cls for cls in (FedAvg, Local)}

__all__ = ["REGISTRY", "Algorithm", "FedAvg", "Local"]
