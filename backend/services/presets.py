"""The presets users can start from, with a line or two on what each one is."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from backend.schemas import PresetOut
from tap_engine import config as engine_config
from tap_engine.pairs import scenario_pairs

log = logging.getLogger(__name__)


def list_presets() -> list[PresetOut]:
    items = []
    for name in engine_config.list_presets():
        try:
            run = engine_config.RunConfig.model_validate(engine_config.load_preset(name))
        except (engine_config.ConfigError, ValidationError):
            # One broken preset file should not hide the others.
            log.exception("preset %r does not validate; not listed", name)
            continue
        items.append(
            PresetOut(
                name=name,
                description=run.description or describe(name),
                algorithm=run.algorithm,
                rounds=run.rounds,
                clients=len(run.scenario.clients),
                backbone=run.backbone.name,
                pairs=scenario_pairs(run.scenario),
            )
        )
    return items


def describe(name: str) -> str:
    """The comment block a preset file starts with, as one paragraph (for presets that
    set no ``description``)."""
    lines = []
    for line in (engine_config.PRESETS_DIR / f"{name}.yaml").read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(part for part in lines if part)


def resolved(name: str) -> dict[str, Any] | None:
    """The preset's full config with every default filled in; None for an unknown name."""
    if name not in engine_config.list_presets():
        return None  # the engine also takes a path; the API must not read the server's files
    return engine_config.resolve_config(name).model_dump(mode="json")
