from __future__ import annotations

from fastapi import APIRouter

from backend.schemas import PresetList
from backend.services import presets

router = APIRouter(prefix="/presets", tags=["presets"])


@router.get("", response_model=PresetList)
def list_presets() -> PresetList:
    return PresetList(items=presets.list_presets())
