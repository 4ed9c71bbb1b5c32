"""``GET /catalog``: algorithms, task families, metrics and presets, for forms and charts."""

from __future__ import annotations

import logging
from functools import cache

from fastapi import APIRouter
from pydantic import ValidationError

from backend.api import examples as ex
from backend.api.catalog_schemas import EXAMPLE, Catalog, CatalogPreset, PresetDefaults
from backend.services.presets import describe
from tap_engine import catalog as engine_catalog
from tap_engine import config as engine_config
from tap_engine.pairs import scenario_pairs

log = logging.getLogger(__name__)

router = APIRouter(tags=["catalog"])


@router.get("/catalog", response_model=Catalog, responses=ex.responses(EXAMPLE))
def get_catalog() -> Catalog:
    """What this server offers: every algorithm it runs (with a one-line description and
    a chart colour), the task families, the metrics (which way is better, the main metric
    of each family) and the presets with the values a submission gets by default."""
    return Catalog(**engine_catalog.as_dict(), presets=list(preset_entries()))


@cache  # preset files do not change while the server runs
def preset_entries() -> tuple[CatalogPreset, ...]:
    entries = []
    for name in engine_config.list_presets():
        try:
            config = engine_config.resolve_config(name)
        except (engine_config.ConfigError, ValidationError):
            # One broken preset file should not hide the others (nor the catalog).
            log.exception("preset %r does not validate; not in the catalog", name)
            continue
        defaults = PresetDefaults(
            **config.model_dump(include=set(PresetDefaults.model_fields) - {"clients", "backbone"}),
            clients=len(config.scenario.clients),
            backbone=config.backbone.name,
        )
        entries.append(
            CatalogPreset(
                name=name,
                description=config.description or describe(name),
                defaults=defaults,
                pairs=scenario_pairs(config.scenario),
            )
        )
    return tuple(entries)
