from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.exceptions import RequestValidationError

from backend.api import examples as ex
from backend.api.deps import SessionDep, not_found
from backend.schemas import CompareOut
from backend.services import compare, runs
from tap_engine.events import ModelKind, Split

router = APIRouter(prefix="/compare", tags=["compare"])

MAX_COMPARED_RUNS = 500
MAX_RUN_ID = 2**63 - 1  # SQL's BIGINT: a larger id cannot name a run


@router.get("", response_model=CompareOut, responses=ex.responses(ex.COMPARE, 404, 422))
def compare_runs(
    session: SessionDep,
    metric: Annotated[str, Query(min_length=1, max_length=100, examples=["accuracy"])],
    runs_: Annotated[
        str | None,
        Query(
            alias="runs",
            pattern=r"^\s*\d+\s*(,\s*\d+\s*)*$",
            description="comma-separated run ids; give this or `group`",
            examples=["12,13,14,15"],
        ),
    ] = None,
    group: Annotated[
        str | None,
        Query(max_length=64, description="a sweep's group id (the runs of one experiment)"),
    ] = None,
    split: Split = "local",
    model: ModelKind = "personal",
) -> CompareOut:
    """Runs grouped by their resolved config without the seed; per group the mean ± std over
    its runs of `metric` for `model` on `split`, per client, task and round (`curves`), and
    at each run's last evaluated round (`final`, with each run's value). `label` says what
    sets a group apart. Only succeeded runs are compared; the others are listed in
    `excluded`. `differing` names the config keys besides `algorithm` whose values differ
    between the groups."""
    if (runs_ is None) == (group is None):
        raise RequestValidationError(
            [
                {
                    "type": "missing",
                    "loc": ("query", "runs"),
                    "msg": "give `runs` or `group`, not both",
                    "input": None,
                }
            ]
        )
    if runs_ is not None:
        ids = list(dict.fromkeys(int(x) for x in runs_.split(",")))
        too_big = [i for i in ids if i > MAX_RUN_ID]
        if too_big:
            raise RequestValidationError(
                [
                    {
                        "type": "less_than_equal",
                        "loc": ("query", "runs"),
                        "input": runs_,
                        "msg": f"run id {too_big[0]} is larger than any run id ({MAX_RUN_ID})",
                    }
                ]
            )
        if len(ids) > MAX_COMPARED_RUNS:
            raise RequestValidationError(
                [
                    {
                        "type": "too_long",
                        "loc": ("query", "runs"),
                        "input": runs_,
                        "msg": f"at most {MAX_COMPARED_RUNS} runs",
                    }
                ]
            )
        found = compare.runs_by_id(session, ids)
        missing = sorted(set(ids) - {r.id for r in found})
        if missing:
            raise not_found("run", missing[0])
    else:
        found, _ = runs.list_runs(session, group_id=group, limit=MAX_COMPARED_RUNS)
        if not found:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"group {group} has no runs")
    return compare.compare(session, found, metric, split, model)
