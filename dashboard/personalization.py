"""What personalization bought and what it cost, per client and task: pure frames.

For each client and task, on the task's main metric, the last value of each personalized
model (``personal``: TAP's per-client model during FL; ``final``: the model after stage 2)
minus the last value of the ``global`` model,

- *bought*: on the client's own test data (local), what personalization is for;
- *cost*: on every client's test data of the task (pooled), the generalization it gave up
  (or gained).

Both are turned so that positive means better than the global model: for a lower-is-better
metric (mse, loss) the difference is negated.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from backend.client.types import Catalog

REFERENCE = "global"
PERSONALIZED = ("personal", "final")
STAGES = ("fl", "post")  # a line's last value: the post-FL stage comes after the FL rounds
COLUMNS = ["client", "task", "metric", "lower_is_better", "model", "bought", "cost"]
# Unknown metric names read as the engine reads them: these endings are higher-is-better.
HIGHER_ENDINGS = ("accuracy", "_f1", "chrf")


def higher_is_better(metric: str, catalog: Catalog) -> bool:
    """The catalog's direction of ``metric``; a name it lacks by its ending, as the engine
    does (``*accuracy``, ``*_f1``, ``*chrf``, ``meteor*``: higher; anything else: lower)."""
    for entry in catalog["metrics"]:
        if entry["name"] == metric:
            return bool(entry["higher_is_better"])
    lowered = metric.lower()
    return lowered.endswith(HIGHER_ENDINGS) or lowered.startswith("meteor")


def last_values(frame: pd.DataFrame) -> pd.DataFrame:
    """The last value of each client, task, metric, model and split (stage 2 after FL)."""
    if frame.empty:
        return frame
    stage_rank = frame["stage"].map({s: i for i, s in enumerate(STAGES)}).fillna(len(STAGES))
    ordered = frame.assign(_stage=stage_rank).sort_values(["_stage", "round"], kind="stable")
    keys = ["client", "task", "metric", "model", "split"]
    return ordered.groupby(keys).tail(1).drop(columns="_stage")


def gains(frame: pd.DataFrame, higher: Mapping[str, bool]) -> pd.DataFrame:
    """One row per client, task, metric and personalized model: ``bought`` and ``cost``
    (positive = better than global; ``higher``: metric -> whether higher is better)."""
    last = last_values(frame)
    if last.empty:
        return pd.DataFrame(columns=COLUMNS)
    table = last.pivot_table(
        index=["client", "task", "metric"], columns=["model", "split"], values="value"
    )
    rows = []
    for (client, task, metric), values in table.iterrows():
        sign = 1.0 if higher.get(str(metric), True) else -1.0
        for model in PERSONALIZED:
            delta = {
                split: sign * (values.get((model, split)) - values.get((REFERENCE, split)))
                if (model, split) in values.index and (REFERENCE, split) in values.index
                else float("nan")
                for split in ("local", "pooled")
            }
            if pd.isna(delta["local"]) and pd.isna(delta["pooled"]):
                continue
            rows.append(
                {
                    "client": int(client),
                    "task": str(task),
                    "metric": str(metric),
                    "lower_is_better": sign < 0,
                    "model": model,
                    "bought": delta["local"],
                    "cost": delta["pooled"],
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def gains_table(gained: pd.DataFrame) -> pd.DataFrame:
    """``gains`` as a table to read: a row per client and task, "bought" and "cost" per
    personalized model; lower-is-better metrics marked "↓ (flipped)"."""
    if gained.empty:
        return pd.DataFrame()
    labelled = gained.assign(
        metric=[
            f"{m} ↓ (flipped)" if low else m
            for m, low in zip(gained["metric"], gained["lower_is_better"], strict=True)
        ]
    )
    wide = labelled.pivot_table(
        index=["client", "task", "metric"], columns="model", values=["bought", "cost"]
    )
    order = [(what, m) for m in PERSONALIZED for what in ("bought", "cost") if (what, m) in wide]
    wide = wide[order]
    wide.columns = [f"{model} {what}" for what, model in order]
    return wide.reset_index()
