"""Federated algorithms, each a small strategy over the shared loop in ``tap_engine.runner``.

Which algorithms exist is declared in ``tap_engine.catalog``; this maps each name to its
class, imported here.
"""

from tap_engine import catalog
from tap_engine.algorithms.base import Algorithm


def algorithm_class(name: str) -> type[Algorithm]:
    cls = catalog.algorithm(name).load()
    if not (isinstance(cls, type) and issubclass(cls, Algorithm)):
        raise TypeError(f"algorithm {name!r}: {cls!r} is not an Algorithm")
    return cls


__all__ = ["Algorithm", "algorithm_class"]
