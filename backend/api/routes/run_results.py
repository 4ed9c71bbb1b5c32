"""What a run produced beside its metrics: TAP's replacement events and the downloadable
artifacts (resolved config, each client's final personalized adapters)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse

from backend.api import examples as ex
from backend.api.deps import (
    Offset,
    RunId,
    SessionDep,
    SettingsDep,
    not_found,
)
from backend.models import Run
from backend.schemas import SQL_INT_MAX, ArtifactOut, Page, ReplacementOut
from backend.services import artifacts, runs
from backend.services.metrics import query_replacements

router = APIRouter(prefix="/runs", tags=["runs"])


def _run(session: SessionDep, run_id: int) -> Run:
    run = runs.get_run(session, run_id)
    if run is None:
        raise not_found("run", run_id)
    return run


@router.get(
    "/{run_id}/replacements",
    response_model=Page[ReplacementOut],
    responses=ex.responses(ex.page(ex.REPLACEMENT), 404),
)
def get_replacements(
    run_id: RunId,
    session: SessionDep,
    client: Annotated[int | None, Query(ge=0, le=SQL_INT_MAX)] = None,
    task: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    offset: Offset = 0,
) -> Page[ReplacementOut]:
    """TAP's replacement decisions in round order: where a client's personal model took over
    a task's parameters (global loss, personal loss, margin, parameters copied)."""
    _run(session, run_id)
    items, total = query_replacements(session, run_id, client, task, limit, offset)
    return Page[ReplacementOut](
        items=[ReplacementOut.model_validate(r) for r in items], total=total
    )


@router.get(
    "/{run_id}/artifacts",
    response_model=list[ArtifactOut],
    responses=ex.responses(ex.ARTIFACTS, 404),
)
def list_artifacts(run_id: RunId, session: SessionDep, settings: SettingsDep) -> list[ArtifactOut]:
    """The resolved config, and once the run has finished, each client's final personalized
    trainable state (adapters and heads) as safetensors."""
    run = _run(session, run_id)
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
def download_artifact(
    run_id: RunId, name: str, session: SessionDep, settings: SettingsDep
) -> Response:
    """One artifact by the name the listing gives."""
    run = _run(session, run_id)
    artifact = artifacts.find_artifact(run, settings.runs_dir, name)
    if artifact is None:
        raise not_found(f"artifact {name!r} of run", run_id)
    disposition = {"Content-Disposition": f'attachment; filename="run-{run_id}-{name}"'}
    if artifact.path is None:
        return Response(
            artifacts.config_bytes(run), media_type=artifact.media_type, headers=disposition
        )
    return FileResponse(artifact.path, media_type=artifact.media_type, headers=disposition)
