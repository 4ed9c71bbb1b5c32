"""What a run produced beside its metrics: TAP's replacement events, the bytes each round
sent between server and clients, and the downloadable artifacts (resolved config, each
client's final personalized adapters)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse

from backend.api import examples as ex
from backend.api.deps import Offset, RunDep, SessionDep, SettingsDep, not_found
from backend.schemas import SQL_INT_MAX, ArtifactOut, Page, ReplacementOut, TrafficOut
from backend.services import artifacts
from backend.services.metrics import query_replacements, query_traffic

router = APIRouter(prefix="/runs", tags=["runs"])


@router.get(
    "/{run_id}/replacements",
    response_model=Page[ReplacementOut],
    responses=ex.responses(ex.page(ex.REPLACEMENT), 404),
)
def get_replacements(
    run: RunDep,
    session: SessionDep,
    client: Annotated[int | None, Query(ge=0, le=SQL_INT_MAX)] = None,
    task: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    offset: Offset = 0,
) -> Page[ReplacementOut]:
    """TAP's replacement decisions in round order: where a client's personal model took over
    a task's parameters (global loss, personal loss, margin, parameters copied)."""
    items, total = query_replacements(session, run.id, client, task, limit, offset)
    return Page[ReplacementOut](
        items=[ReplacementOut.model_validate(r) for r in items], total=total
    )


@router.get(
    "/{run_id}/traffic",
    response_model=Page[TrafficOut],
    responses=ex.responses(ex.page(ex.TRAFFIC), 404, 422),
)
def get_traffic(
    run: RunDep,
    session: SessionDep,
    client: Annotated[int | None, Query(ge=0, le=SQL_INT_MAX)] = None,
    direction: Literal["down", "up"] | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    offset: Offset = 0,
) -> Page[TrafficOut]:
    """Communication cost in round order: the bytes of trainable tensors each participant
    received (``down``) and uploaded (``up``) per FL round. Local training and stage 2 send
    nothing, so such runs have no rows."""
    items, total = query_traffic(session, run.id, client, direction, limit, offset)
    return Page[TrafficOut](items=[TrafficOut.model_validate(r) for r in items], total=total)


@router.get(
    "/{run_id}/artifacts",
    response_model=list[ArtifactOut],
    responses=ex.responses(ex.ARTIFACTS, 404),
)
def list_artifacts(run: RunDep, settings: SettingsDep) -> list[ArtifactOut]:
    """The resolved config, and once the run has finished, each client's final personalized
    trainable state (adapters and heads) as safetensors."""
    return [
        ArtifactOut.model_validate(a, from_attributes=True)
        for a in artifacts.list_artifacts(run, settings.runs_dir)
    ]


@router.get(
    "/{run_id}/artifacts/{name}",
    response_class=Response,
    responses={
        200: {
            "description": "the file",
            "content": {
                "application/json": {"example": ex.CONFIG},
                "application/octet-stream": {"example": "(safetensors bytes)"},
            },
        },
        **ex.errors_of(404),
    },
)
def download_artifact(run: RunDep, name: str, settings: SettingsDep) -> Response:
    """One artifact by the name the listing gives."""
    artifact = artifacts.find_artifact(run, settings.runs_dir, name)
    if artifact is None:
        raise not_found(f"artifact {name!r} of run", run.id)
    disposition = {"Content-Disposition": f'attachment; filename="run-{run.id}-{name}"'}
    if artifact.path is None:
        return Response(
            artifacts.config_bytes(run), media_type=artifact.media_type, headers=disposition
        )
    return FileResponse(artifact.path, media_type=artifact.media_type, headers=disposition)
