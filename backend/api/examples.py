"""Example bodies for the OpenAPI document: every endpoint shows one.

``responses(...)`` builds the ``responses=`` argument of a route: the example of its
success answer (merged by FastAPI with the schema it derives) and the errors it may give.
"""

from __future__ import annotations

from typing import Any

CONFIG = {
    "name": "demo",
    "preset": "demo",
    "algorithm": "tap",
    "seed": 42,
    "rounds": 6,
    "clients": 3,
    "clients_per_round": 3,
    "device": "cpu",
    "backbone": {"name": "flava-tiny", "tiny_hidden_size": 32},
}

RUN = {
    "id": 12,
    "experiment_id": 7,
    "experiment_name": "tap vs fedavg",
    "preset": "demo",
    "algorithm": "tap",
    "seed": 42,
    "status": "running",
    "stage": "fl",
    "round": 3,
    "total_rounds": 6,
    "progress": 0.5,
    "eta_s": 41.5,
    "error": None,
    "created_at": "2026-11-24T18:00:00Z",
    "queued_at": "2026-11-24T18:00:00Z",
    "started_at": "2026-11-24T18:00:02Z",
    "claimed_at": "2026-11-24T18:00:02Z",
    "finished_at": None,
    "heartbeat_at": "2026-11-24T18:00:40Z",
    "attempt": 1,
    "worker": "gpu-node-1 pid 4242",
    "group_id": "5f1c0e9a2b7d4c3e8f6a1b2c3d4e5f60",
    "sweep": {"seed": 42},
    "time_limit_s": None,
    "config": CONFIG,
}

LOSS = {
    "round": 3,
    "stage": "fl",
    "client": 0,
    "model": "personal",
    "task": "vqa",
    "loss": 0.73,
    "steps": 2,
}

# A step of the student: TAP's lambda x KD on one task, as added to its loss.
STEP = {
    "round": 6,
    "stage": "post",
    "client": 0,
    "model": "final",
    "step": 3,
    "micro_batches": 4,
    "term": "kd",
    "task": "vqa",
    "value": 0.0019,
}

RUN_DETAIL = {
    **RUN,
    "latest_losses": [LOSS],
    "transitions": [
        {
            "at": "2026-11-24T18:00:00Z",
            "from_status": None,
            "to_status": "queued",
            "attempt": 0,
            "reason": "submitted by ada",
        },
        {
            "at": "2026-11-24T18:00:02Z",
            "from_status": "queued",
            "to_status": "running",
            "attempt": 1,
            "reason": "taken by gpu-node-1 pid 4242",
        },
    ],
}

EXPERIMENT = {
    "id": 7,
    "name": "tap vs fedavg",
    "preset": "demo",
    "owner": "ada",
    "created_at": "2026-11-24T18:00:00Z",
    "runs": [RUN],
}

EXPERIMENT_PREVIEW = {
    "runs": 2,
    "combinations": [{"seed": 41}, {"seed": 42}],
    "config": {"preset": "demo", "algorithm": "tap", "seed": 41, "rounds": 4},
}

METRIC = {
    "round": 3,
    "stage": "fl",
    "client": 0,
    "task": "vqa",
    "model": "personal",
    "split": "local",
    "metric": "accuracy",
    "value": 0.81,
    "n": 64,
}

METRICS_CSV = (
    "round,stage,client,task,model,split,metric,value,n\n"
    "3,fl,0,vqa,personal,local,accuracy,0.81,64\n"
)

REPLACEMENT = {
    "round": 3,
    "client": 0,
    "task": "vqa",
    "global_loss": 0.91,
    "personal_loss": 0.74,
    "margin": 0.0,
    "parameters_copied": 18432,
}

TRAFFIC = {"round": 3, "client": 0, "direction": "up", "bytes": 73728, "parameters": 18432}

LOG_LINE = {
    "seq": 5,
    "time": "2026-11-24T18:00:03Z",
    "level": "INFO",
    "source": "engine",
    "message": "round 1/6: 3 clients",
}

LOGS_TEXT = "2026-11-24T18:00:03.000+00:00 INFO    [engine] round 1/6: 3 clients\n"

ARTIFACTS = [
    {
        "name": "config.json",
        "kind": "config",
        "client": None,
        "size": 1432,
        "media_type": "application/json",
    },
    {
        "name": "client-000.safetensors",
        "kind": "adapter",
        "client": 0,
        "size": 73816,
        "media_type": "application/octet-stream",
    },
]

PRESET = {
    "name": "demo",
    "description": "three clients, tiny model, CPU",
    "algorithm": "tap",
    "rounds": 6,
    "clients": 3,
    "backbone": "tiny",
}
PRESETS = {"items": [PRESET]}

COMPARE = {
    "metric": "accuracy",
    "split": "local",
    "model": "personal",
    "higher_is_better": True,
    "groups": [
        {
            "key": "3f9a0c1d2e4b5a69",
            "algorithm": "tap",
            "label": "tap",
            "run_ids": [12, 13],
            "seeds": [41, 42],
            "curves": [
                {
                    "client": 0,
                    "task": "vqa",
                    "rounds": [1, 2],
                    "mean": [0.55, 0.62],
                    "std": [0.01, 0.02],
                    "n": [2, 2],
                }
            ],
            "config": {"algorithm": "tap", "rounds": 12, "tap.margin": 0.02},
            "final": [
                {
                    "client": 0,
                    "task": "vqa",
                    "mean": 0.62,
                    "std": 0.02,
                    "n": 2,
                    "values": [
                        {"run_id": 12, "seed": 41, "value": 0.6, "round": 12},
                        {"run_id": 13, "seed": 42, "value": 0.64, "round": 12},
                    ],
                }
            ],
        },
        {
            "key": "a81b44c0de9f1270",
            "algorithm": "fedavg",
            "label": "fedavg",
            "run_ids": [14, 15],
            "seeds": [41, 42],
            "curves": [
                {
                    "client": 0,
                    "task": "vqa",
                    "rounds": [1, 2],
                    "mean": [0.5, 0.53],
                    "std": [0.0, 0.01],
                    "n": [2, 2],
                }
            ],
            "config": {"algorithm": "fedavg", "rounds": 12, "tap.margin": 0.02},
            "final": [
                {
                    "client": 0,
                    "task": "vqa",
                    "mean": 0.53,
                    "std": 0.01,
                    "n": 2,
                    "values": [
                        {"run_id": 14, "seed": 41, "value": 0.52, "round": 12},
                        {"run_id": 15, "seed": 42, "value": 0.54, "round": 12},
                    ],
                }
            ],
        },
    ],
    "excluded": [{"run_id": 16, "status": "failed"}],
    "differing": [],
}

USER = {
    "id": 2,
    "name": "ada",
    "is_admin": False,
    "token_prefix": "q7XbZ1",
    "created_at": "2026-11-24T18:00:00Z",
    "revoked_at": None,
}
USER_CREATED = {**USER, "token": "q7XbZ1...the whole token, shown once..."}

HEALTH = {"status": "ok", "database": True, "redis": True}

ERRORS: dict[int, str] = {
    401: "missing, unknown or revoked token",
    403: "the token's user may not do this (not the owner, or not an admin)",
    404: "no such id",
    409: "the current status does not allow it; `detail` says why",
    413: "request body too large",
    422: "invalid input; `detail` lists each error with its field path (`loc`)",
}


def page(item: Any, total: int = 1) -> dict[str, Any]:
    return {"items": [item], "total": total}


def responses(
    example: Any, *errors: int, status: int = 200, media_type: str = "application/json"
) -> dict[int | str, dict[str, Any]]:
    return {status: {"content": {media_type: {"example": example}}}, **errors_of(*errors)}


def errors_of(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"description": ERRORS[code]} for code in codes}
