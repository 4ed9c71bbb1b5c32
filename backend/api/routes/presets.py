from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.api import examples as ex
from backend.api.deps import not_found_name
from backend.schemas import PresetList
from backend.services import presets

router = APIRouter(prefix="/presets", tags=["presets"])


@router.get("", response_model=PresetList, responses=ex.responses(ex.PRESETS))
def list_presets() -> PresetList:
    return PresetList(items=presets.list_presets())


@router.get("/{name}", response_model=dict[str, Any], responses=ex.responses(ex.CONFIG, 404))
def show_preset(name: str) -> dict[str, Any]:
    """The preset's resolved config: every field a submission can override (dotted keys)."""
    config = presets.resolved(name)
    if config is None:
        raise not_found_name("preset", name)
    return config
