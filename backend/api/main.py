"""The v1 router: every resource but health requires a bearer token."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from backend.api.deps import get_current_user
from backend.api.routes import (
    catalog,
    compare,
    experiments,
    health,
    presets,
    run_results,
    runs,
    users,
)

api_router = APIRouter()
api_router.include_router(health.router)

# Auth on the group rather than on each handler, so a new route cannot forget it.
_protected = APIRouter(
    dependencies=[Depends(get_current_user)],
    responses={401: {"description": "missing, unknown or revoked token"}},
)
_protected.include_router(catalog.router)
_protected.include_router(presets.router)
_protected.include_router(experiments.router)
_protected.include_router(runs.router)
_protected.include_router(run_results.router)
_protected.include_router(compare.router)
_protected.include_router(users.router)
api_router.include_router(_protected)
