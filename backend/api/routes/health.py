from __future__ import annotations

from fastapi import APIRouter, Response, status

from backend.api import examples as ex
from backend.api.deps import SessionDep, SettingsDep
from backend.schemas import Health
from backend.services import health

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=Health,
    responses={
        **ex.responses(ex.HEALTH),
        503: {"model": Health, "description": "the database or Redis is down"},
    },
)
def get_health(session: SessionDep, settings: SettingsDep, response: Response) -> Health:
    """Whether the API reaches its database and the queue broker. Needs no token."""
    result = health.check(session, settings.redis_url)
    if result.status != "ok":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return result
