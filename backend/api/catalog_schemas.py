"""Response bodies of ``GET /api/v1/catalog``: what the server offers, as the engine's
catalog (``tap_engine.catalog``) declares it, and the presets with their default values."""

from __future__ import annotations

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


class Catalog(BaseModel):
    algorithms: list[CatalogAlgorithm] = Field(description="in catalog order, built-ins first")
    task_families: list[str]
    metrics: list[CatalogMetric]
    presets: list[CatalogPreset]
