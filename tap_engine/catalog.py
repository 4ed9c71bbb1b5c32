"""What tapfl offers, declared once: algorithms, task families and metrics.

The config validates against it, the API serves it (``GET /api/v1/catalog``), and the
dashboard and the CLI read it from there. It imports nothing of the engine, so the API can
read it without loading torch; an algorithm's class is imported only when a run needs it.
Adding an algorithm means writing its class and registering it here (or calling
``register_algorithm`` from a plugin); nothing outside the engine changes.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass
from typing import Any, Literal

TaskFamily = Literal[
    "image_classification", "text_classification", "image_generation", "text_generation"
]
TASK_FAMILIES: tuple[TaskFamily, ...] = (
    "image_classification",
    "text_classification",
    "image_generation",
    "text_generation",
)


@dataclass(frozen=True)
class AlgorithmInfo:
    name: str
    description: str  # one line, shown beside the name in the submit form and the CLI
    implementation: str  # "module:Class"
    color: str | None = None  # chart colour; None: the dashboard picks one by catalog order

    def load(self) -> type:
        module, _, attribute = self.implementation.partition(":")
        return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class MetricInfo:
    name: str
    higher_is_better: bool
    families: tuple[TaskFamily, ...]  # the task families that report it
    description: str
    quality: bool = True  # False for losses: a training signal, not what a paper's table reports


_ALGORITHMS: dict[str, AlgorithmInfo] = {}


def register_algorithm(info: AlgorithmInfo) -> AlgorithmInfo:
    """Add (or replace) an algorithm; the config accepts its name from then on."""
    if not info.name.isidentifier():
        raise ValueError(f"algorithm name {info.name!r} must be an identifier")
    _ALGORITHMS[info.name] = info
    return info


def unregister_algorithm(name: str) -> None:
    _ALGORITHMS.pop(name, None)


def algorithms() -> dict[str, AlgorithmInfo]:
    """Every algorithm, in the order they were registered (the built-ins first)."""
    return dict(_ALGORITHMS)


def algorithm_names() -> tuple[str, ...]:
    return tuple(_ALGORITHMS)


def algorithm(name: str) -> AlgorithmInfo:
    try:
        return _ALGORITHMS[name]
    except KeyError:
        raise KeyError(
            f"unknown algorithm {name!r}; choose one of {', '.join(_ALGORITHMS)}"
        ) from None


for _info in (
    AlgorithmInfo(
        "tap",
        "TAP: personalized models that adopt the federated components only when they beat "
        "their own by a margin, then distil the global model back in after FL",
        "tap_engine.algorithms.tap:Tap",
        "#ff8700",
    ),
    AlgorithmInfo(
        "tap_no_kd",
        "TAP without distillation in stage 2 (lambda = 0): the ablation of the KD term",
        "tap_engine.algorithms.tap:TapNoKD",
        "#ffbd45",
    ),
    AlgorithmInfo(
        "fedavg",
        "FedAvg: one global model, dataset-size-weighted averages of the clients' updates",
        "tap_engine.algorithms.fedavg:FedAvg",
        "#1c83e1",
    ),
    AlgorithmInfo(
        "fedavg_ft",
        "FedAvg, then each client fine-tunes the global model for post_iterations",
        "tap_engine.algorithms.fedavg:FedAvgFineTuned",
        "#0054a3",
    ),
    AlgorithmInfo(
        "fedavg_ft2x",
        "FedAvg with twice the fine-tuning: as much compute after FL as TAP's two stage-2 models",
        "tap_engine.algorithms.fedavg:FedAvgFineTunedTwice",
        "#83c9ff",
    ),
    AlgorithmInfo(
        "disentafl",
        "DisentAFL: FedAvg with an orthogonality loss that keeps the experts apart",
        "tap_engine.algorithms.disentafl:DisentAFL",
        "#7d4cdb",
    ),
    AlgorithmInfo(
        "disentafl_ft",
        "DisentAFL, then fine-tuning on each client as fedavg_ft",
        "tap_engine.algorithms.disentafl:DisentAFLFineTuned",
        "#b27eff",
    ),
    AlgorithmInfo(
        "local",
        "Local training only: every client trains its own model and nothing is shared",
        "tap_engine.algorithms.local:Local",
        "#21c354",
    ),
):
    register_algorithm(_info)

_CLS: tuple[TaskFamily, ...] = ("image_classification", "text_classification")
_TEXT: tuple[TaskFamily, ...] = ("text_generation",)

METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo("accuracy", True, _CLS, "share of samples whose top class is the label"),
        MetricInfo(
            "loss",
            False,
            (*_CLS, "text_generation"),
            "cross-entropy: mean over samples, or over the set's answer tokens in text generation",
            quality=False,
        ),
        MetricInfo("mse", False, ("image_generation",), "mean squared error per pixel"),
        MetricInfo("perplexity", False, _TEXT, "exp of the mean answer-token loss", quality=False),
        MetricInfo("token_accuracy", True, _TEXT, "share of answer tokens predicted right"),
        MetricInfo("exact_match", True, _TEXT, "share of answers read back exactly"),
        MetricInfo("chrf", True, _TEXT, "chrF (sacrebleu) of the answer, 0-100"),
        MetricInfo("meteor", True, _TEXT, "METEOR with WordNet synonyms"),
        MetricInfo(
            "meteor_exact_stem", True, _TEXT, "METEOR on exact words and stems (no WordNet)"
        ),
        MetricInfo("bertscore_f1", True, _TEXT, "BERTScore F1 (bert-base-uncased by default)"),
    )
}

# The metric a task family is judged on first: a quality metric, never a loss.
MAIN_METRICS: dict[TaskFamily, str] = {
    "image_classification": "accuracy",
    "text_classification": "accuracy",
    "image_generation": "mse",
    "text_generation": "chrf",
}


def metric(name: str) -> MetricInfo:
    """A metric's entry. Unknown names are read by their ending (``*_loss``, ``*accuracy``),
    else taken as lower-is-better, as losses are the common unknown."""
    if name in METRICS:
        return METRICS[name]
    lowered = name.lower()
    higher = lowered.endswith(("accuracy", "_f1", "chrf")) or lowered.startswith("meteor")
    return MetricInfo(name, higher, (), "not in the catalog", quality=higher)


def higher_is_better(name: str) -> bool:
    return metric(name).higher_is_better


def as_dict() -> dict[str, Any]:
    """The catalog as JSON-ready data (what ``GET /api/v1/catalog`` serves, with presets)."""
    return {
        "algorithms": [
            {"name": a.name, "description": a.description, "color": a.color}
            for a in _ALGORITHMS.values()
        ],
        "task_families": list(TASK_FAMILIES),
        "metrics": [
            {**asdict(m), "families": list(m.families), "main_for": _main_for(m.name)}
            for m in METRICS.values()
        ],
    }


def _main_for(name: str) -> list[str]:
    return [family for family, main in MAIN_METRICS.items() if main == name]
