"""Response bodies of ``GET /api/v1/catalog``: what the server offers, as the engine's
catalog (``tap_engine.catalog``) declares it, and the presets with their default values."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class CatalogAlgorithm(BaseModel):
    name: str
    description: str = Field(description="one line, shown beside the name")
    color: str | None = Field(description="chart colour (#rrggbb); null: the client picks one")


class CatalogMetric(BaseModel):
    name: str
    higher_is_better: bool
    families: list[str] = Field(description="the task families that report it")
    description: str
    quality: bool = Field(description="false for losses: a training signal, not a result")
    main_for: list[str] = Field(description="the task families judged on this metric first")


class PresetDefaults(BaseModel):
    """The values a submission of the preset gets for the fields it leaves out."""

    algorithm: str
    seed: int
    rounds: int
    clients: int = Field(description="clients in the scenario")
    clients_per_round: int
    local_steps: int
    batch_size: int
    grad_accum: int
    peak_lr: float
    min_lr: float
    warmup_rounds: int
    post_iterations: int = Field(description="stage-2 micro-batches")
    kd_lambda: float
    eval_every: int
    margins: dict[str, float] = Field(description="replacement margin per task family")
    backbone: str


class CatalogPreset(BaseModel):
    name: str
    description: str
    defaults: PresetDefaults
    pairs: list[str] = Field(
        default_factory=list,
        description="the modality-task pairs (MODALITIES:FAMILY) in the order the setting "
        "`pairs` keeps them; `pairs=2` keeps the first two",
    )


class Catalog(BaseModel):
    algorithms: list[CatalogAlgorithm] = Field(description="in catalog order, built-ins first")
    task_families: list[str]
    metrics: list[CatalogMetric]
    presets: list[CatalogPreset]


EXAMPLE: dict[str, Any] = {
    "algorithms": [
        {
            "name": "tap",
            "description": "TAP: personalized models that adopt the federated "
            "components only when they beat their own by a margin, then distil the global model "
            "back in after FL",
            "color": "#ff8700",
        },
        {"name": "my_plugin", "description": "an algorithm a plugin registered", "color": None},
    ],
    "task_families": [
        "image_classification",
        "text_classification",
        "image_generation",
        "text_generation",
    ],
    "metrics": [
        {
            "name": "mse",
            "higher_is_better": False,
            "families": ["image_generation"],
            "description": "mean squared error per pixel",
            "quality": True,
            "main_for": ["image_generation"],
        },
    ],
    "presets": [
        {
            "name": "demo",
            "description": "a small scenario that runs on a CPU in minutes",
            "defaults": {
                "algorithm": "tap",
                "seed": 41,
                "rounds": 12,
                "clients": 7,
                "clients_per_round": 4,
                "local_steps": 25,
                "batch_size": 16,
                "grad_accum": 1,
                "peak_lr": 0.003,
                "min_lr": 0.001,
                "warmup_rounds": 2,
                "post_iterations": 20,
                "kd_lambda": 0.002,
                "eval_every": 2,
                "margins": {
                    "image_classification": 0.01,
                    "text_classification": 0.005,
                    "image_generation": 0.005,
                    "text_generation": 0.01,
                },
                "backbone": "flava-tiny",
            },
            "pairs": [
                "image:image_classification",
                "text:text_classification",
                "image:image_generation",
                "image+text:text_generation",
            ],
        },
    ],
}
