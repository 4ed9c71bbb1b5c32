"""The modality-task-pair study of one sweep, as Markdown: what the Study page shows, plus
the rank correlation between M and the global model's training loss that docs/STUDIES.md
reports. Reads the API only (``TAPFL_API_URL``, ``TAPFL_TOKEN``).

    python -m dashboard.study_report --experiment 1 > result.md
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Sequence

import pandas as pd
from scipy.stats import spearmanr
from streamlit import logger

# dashboard.data's caches warn at import, outside a Streamlit server, that they keep to
# memory: not news for a command-line report.
logger.set_log_level(logging.ERROR)

from backend.client import TapflClient  # noqa: E402
from backend.client.types import Run  # noqa: E402
from dashboard import compare, study  # noqa: E402
from dashboard.data import LOSS_COLUMNS, METRIC_COLUMNS  # noqa: E402


def _losses(client: TapflClient, run: Run) -> pd.DataFrame:
    rows = client.losses(run["id"], model="global", stage="fl")
    return pd.DataFrame(rows, columns=LOSS_COLUMNS)


def shared_task_loss(losses: pd.DataFrame, task: str) -> pd.Series:
    """round -> the global model's training loss on ``task`` alone (steps-weighted over
    the clients that trained it): a quantity whose meaning does not change with M."""
    return study.global_loss(losses[losses["task"] == task])


def rank_correlation(curves: pd.DataFrame, algorithm: str) -> pd.DataFrame:
    """Per round: Spearman's rho between M and the mean loss over seeds (+1: the loss
    grows with M at every step of M, as the bound predicts), from the groups that have it."""
    rows = []
    mine = curves[(curves["algorithm"] == algorithm) & curves["pairs"].notna()]
    for round_, group in mine.groupby("round"):
        if group["pairs"].nunique() < 3:
            continue
        rho = spearmanr(group["pairs"].astype(float), group["mean"]).statistic
        rows.append({"round": int(round_), "rho": float(rho)})
    return pd.DataFrame(rows, columns=["round", "rho"])


def _curve_table(curves: pd.DataFrame, rounds: Sequence[int]) -> pd.DataFrame:
    picked = curves[curves["round"].isin(rounds)].copy()
    picked["cell"] = [
        f"{m:.3f} ± {s:.3f}" if n > 1 and math.isfinite(s) else f"{m:.3f}"
        for m, s, n in picked[["mean", "std", "n"]].itertuples(False)
    ]
    picked["M"] = picked["pairs"].map(study.pairs_label)
    table = picked.pivot_table(
        index=["algorithm", "M"], columns="round", values="cell", aggfunc="first"
    )
    table.columns = [f"round {c}" for c in table.columns]
    return table.reset_index()


def report(client: TapflClient, members: list[Run]) -> str:
    started = [r for r in members if r["status"] != "queued"]
    succeeded = [r for r in members if r["status"] == "succeeded"]
    catalog = client.catalog()
    raw = {run["id"]: _losses(client, run) for run in started}
    losses = {rid: study.global_loss(frame) for rid, frame in raw.items()}
    curves = study.loss_curves(started, losses)
    # The task every variant keeps: the first pair's tasks are in every M.
    shared = sorted(set.intersection(*(set(f["task"]) for f in raw.values() if not f.empty)))
    out = [
        f"{len(succeeded)} of {len(members)} runs succeeded "
        f"({', '.join(sorted({r['status'] for r in members}))}).",
        "",
    ]
    last = int(curves["round"].max())
    rounds = sorted({1, 2, 4, 6, 8, 10, last} & set(curves["round"]))
    out += ["### Global model's training loss (mean ± std over seeds)", ""]
    out += [_curve_table(curves, rounds).to_markdown(index=False), ""]
    curves_by = {"all tasks": curves}
    for task in shared:
        per_task = {rid: shared_task_loss(frame, task) for rid, frame in raw.items()}
        task_curves = study.loss_curves(started, per_task)
        out += [f"### Loss on `{task}` alone, the task every variant holds", ""]
        out += [_curve_table(task_curves, rounds).to_markdown(index=False), ""]
        curves_by[task] = task_curves
    out += ["### Spearman's rho between M and the loss, per round", ""]
    rho_rows = []
    for name, frame in curves_by.items():
        for algorithm in sorted(set(frame["algorithm"])):
            rho = rank_correlation(frame, algorithm)
            if rho.empty:
                continue
            rho_rows.append(
                {
                    "loss": name,
                    "algorithm": algorithm,
                    "rounds with rho = +1": f"{int((rho['rho'] > 0.999).sum())}/{len(rho)}",
                    "rounds with rho > 0": f"{int((rho['rho'] > 0).sum())}/{len(rho)}",
                    "mean rho": f"{rho['rho'].mean():+.2f}",
                    "rho at last round": f"{rho['rho'].iloc[-1]:+.2f}",
                }
            )
    out += [pd.DataFrame(rho_rows).to_markdown(index=False), ""]
    threshold = study.default_threshold(curves)
    if threshold is not None:
        reached = study.rounds_to_threshold(started, losses, threshold)
        per_run = {}
        for run in succeeded:
            metrics = pd.DataFrame(
                client.metrics(run["id"], model=study.FINAL_MODEL), columns=METRIC_COLUMNS
            )
            task_metrics = {
                str(t): sorted(set(rows)) for t, rows in metrics.groupby("task")["metric"]
            }
            mains = compare.task_mains(task_metrics, catalog)
            per_run[run["id"]] = study.run_finals(metrics, mains)
        final = study.finals(succeeded, per_run)
        out += [
            f"### Rounds to a global loss ≤ {threshold:.4g}, and final values (model "
            f"`{study.FINAL_MODEL}`, mean ± std over seeds)",
            "",
            study.study_table(reached, final).to_markdown(index=False),
            "",
        ]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    parser.add_argument("--experiment", type=int, required=True, help="experiment id")
    args = parser.parse_args()
    client = TapflClient.from_env()
    members = client.runs(experiment_id=args.experiment, limit=500)["items"]
    if not study.is_pairs_sweep(members):
        raise SystemExit(f"experiment {args.experiment} is not a sweep over `pairs`")
    print(report(client, members))


if __name__ == "__main__":
    main()
