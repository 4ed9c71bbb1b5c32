"""Pure functions of the modality-task-pair study (docs/STUDIES.md): a sweep's runs grouped
by their number of pairs M (the setting ``pairs``) and algorithm, with the mean ± std over
seeds of the global model's training loss per round, of the rounds it takes that loss to
first reach a threshold, and of the final personalization and generalization per task.

The global model's loss of a round is the mean over its clients and tasks of their local
training loss, weighted by the steps each took (``GET /runs/{id}/losses``, model
``global``): a variant with more pairs averages over more tasks, which is what the study
asks about. Nothing here calls the API or imports Streamlit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from backend.client.types import Run

CURVE_COLUMNS = ["algorithm", "pairs", "round", "mean", "std", "n"]
REACHED_COLUMNS = ["algorithm", "pairs", "mean", "std", "reached", "n"]
FINAL_COLUMNS = ["algorithm", "pairs", "split", "task", "metric", "mean", "std", "n"]
SPLITS = {"local": "personalization", "pooled": "generalization"}
FINAL_MODEL = "final"  # what each algorithm delivers after stage 2


def run_pairs(run: Run) -> int | None:
    """The run's number of pairs M: its sweep value, else its config's; None: all."""
    for source in (run.get("sweep") or {}, run.get("config") or {}):
        value = source.get("pairs")
        if value is not None:
            return int(value)
    return None


def is_pairs_sweep(members: Sequence[Run]) -> bool:
    return any("pairs" in (run.get("sweep") or {}) for run in members)


def pairs_label(pairs: int | None) -> str:
    return "all pairs" if pairs is None else f"M={pairs}"


def global_loss(losses: pd.DataFrame) -> pd.Series:
    """round -> the global model's training loss in FL (steps-weighted over clients and
    tasks); empty without such rows."""
    rows = losses[(losses["model"] == "global") & (losses["stage"] == "fl")]
    rows = rows.dropna(subset=["loss"])
    if rows.empty:
        return pd.Series(dtype=float, name="loss")
    weights = rows["steps"].fillna(1).clip(lower=1).astype(float)
    weighted = (rows["loss"].astype(float) * weights).groupby(rows["round"]).sum()
    return (weighted / weights.groupby(rows["round"]).sum()).rename("loss").sort_index()


def _key(run: Run) -> tuple[str, int]:
    pairs = run_pairs(run)
    return run["algorithm"], -1 if pairs is None else pairs


def _nullable(keys: pd.Series) -> pd.Series:
    """The grouping keys back as M, with <NA> for "all pairs" (-1 while grouping)."""
    return pd.Series(
        pd.array([None if int(k) < 0 else int(k) for k in keys], dtype="Int64"), index=keys.index
    )


def loss_curves(runs: Sequence[Run], losses: Mapping[int, pd.Series]) -> pd.DataFrame:
    """A row per algorithm, M and round: the mean, std and n over seeds of the global loss."""
    rows = []
    for run in runs:
        curve = losses.get(run["id"])
        if curve is None:
            continue
        algorithm, pairs = _key(run)
        rows += [(algorithm, pairs, int(r), float(v)) for r, v in curve.items()]
    frame = pd.DataFrame(rows, columns=["algorithm", "pairs", "round", "loss"])
    if frame.empty:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    out = (
        frame.groupby(["algorithm", "pairs", "round"], sort=True)["loss"]
        .agg(["mean", "std", "count"])
        .rename(columns={"count": "n"})
        .reset_index()
    )
    out["pairs"] = _nullable(out["pairs"])
    return out[CURVE_COLUMNS]


def default_threshold(curves: pd.DataFrame) -> float | None:
    """The highest last-round mean loss over the groups: every group reaches it, so the
    rounds it takes compare how fast each gets there."""
    if curves.empty:
        return None
    last = curves.sort_values("round").groupby(["algorithm", "pairs"], dropna=False).tail(1)
    value = float(last["mean"].max())
    return value if math.isfinite(value) else None


def first_round_at_or_below(curve: pd.Series, threshold: float) -> float:
    """The first round whose loss is at most ``threshold``; NaN when none is."""
    reached = curve[curve <= threshold]
    return float(reached.index[0]) if not reached.empty else math.nan


def rounds_to_threshold(
    runs: Sequence[Run], losses: Mapping[int, pd.Series], threshold: float
) -> pd.DataFrame:
    """A row per algorithm and M: the rounds until each seed's global loss first reaches
    ``threshold`` (mean and std over the seeds that reached it), how many did, of how many."""
    rows = []
    for run in runs:
        curve = losses.get(run["id"])
        if curve is None or curve.empty:
            continue
        rows.append((*_key(run), first_round_at_or_below(curve, threshold)))
    frame = pd.DataFrame(rows, columns=["algorithm", "pairs", "rounds"])
    if frame.empty:
        return pd.DataFrame(columns=REACHED_COLUMNS)
    out = (
        frame.groupby(["algorithm", "pairs"], sort=True)["rounds"]
        .agg(["mean", "std", "count", "size"])
        .rename(columns={"count": "reached", "size": "n"})
        .reset_index()
    )
    out["pairs"] = _nullable(out["pairs"])
    return out[REACHED_COLUMNS]


def run_finals(metrics: pd.DataFrame, mains: Mapping[str, str]) -> pd.DataFrame:
    """Per split and task: the final model's value of the task's main metric at its last
    evaluated round, the mean over clients (columns split, task, metric, value)."""
    rows = metrics[metrics["model"] == FINAL_MODEL]
    rows = rows[[mains.get(str(t)) == m for t, m in zip(rows["task"], rows["metric"], strict=True)]]
    if rows.empty:
        return pd.DataFrame(columns=["split", "task", "metric", "value"])
    last = rows.sort_values("round").groupby(["split", "client", "task", "metric"]).tail(1)
    return (
        last.groupby(["split", "task", "metric"], sort=True)["value"]
        .mean()
        .reset_index()[["split", "task", "metric", "value"]]
    )


def finals(runs: Sequence[Run], per_run: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """A row per algorithm, M, split, task and metric: mean, std and n over seeds of the
    runs' final values (``run_finals``)."""
    frames = [
        per_run[run["id"]].assign(algorithm=_key(run)[0], pairs=_key(run)[1])
        for run in runs
        if run["id"] in per_run and not per_run[run["id"]].empty
    ]
    if not frames:
        return pd.DataFrame(columns=FINAL_COLUMNS)
    frame = pd.concat(frames, ignore_index=True)
    out = (
        frame.groupby(["algorithm", "pairs", "split", "task", "metric"], sort=True)["value"]
        .agg(["mean", "std", "count"])
        .rename(columns={"count": "n"})
        .reset_index()
    )
    out["pairs"] = _nullable(out["pairs"])
    return out[FINAL_COLUMNS]


def _cell(mean: float, std: float, n: int) -> str:
    if not math.isfinite(mean):
        return ""
    return f"{mean:.4f} ± {std:.4f}" if n > 1 and math.isfinite(std) else f"{mean:.4f}"


def study_table(reached: pd.DataFrame, final: pd.DataFrame) -> pd.DataFrame:
    """A row per algorithm and M: rounds to the threshold (with how many seeds reached it)
    and, per task, final personalization and generalization ("mean ± std" over seeds)."""
    keys = sorted(
        {(str(a), p) for a, p in zip(reached["algorithm"], reached["pairs"], strict=True)}
        | {(str(a), p) for a, p in zip(final["algorithm"], final["pairs"], strict=True)},
        key=lambda k: (k[0], math.inf if k[1] is None or pd.isna(k[1]) else k[1]),
    )
    columns = list(
        dict.fromkeys(
            f"{task} {SPLITS.get(str(split), split)} ({metric})"
            for split, task, metric in final[["split", "task", "metric"]].itertuples(False)
        )
    )
    out = []
    for algorithm, pairs in keys:
        row: dict[str, object] = {"algorithm": algorithm, "pairs": pairs_label(_none(pairs))}
        hit = reached[(reached["algorithm"] == algorithm) & _same(reached["pairs"], pairs)]
        if not hit.empty:
            one = hit.iloc[0]
            cell = _cell(float(one["mean"]), float(one["std"]), int(one["reached"]))
            row["rounds to threshold"] = f"{cell or 'never'} ({int(one['reached'])}/{one['n']})"
        else:
            row["rounds to threshold"] = ""
        for column in columns:
            row[column] = ""
        mine = final[(final["algorithm"] == algorithm) & _same(final["pairs"], pairs)]
        for one in mine.itertuples(False):
            column = f"{one.task} {SPLITS.get(str(one.split), one.split)} ({one.metric})"
            row[column] = _cell(float(one.mean), float(one.std), int(one.n))
        out.append(row)
    return pd.DataFrame(out, columns=["algorithm", "pairs", "rounds to threshold", *columns])


def _none(value: object) -> int | None:
    return None if value is None or pd.isna(value) else int(value)  # type: ignore[call-overload]


def _same(column: pd.Series, pairs: object) -> pd.Series:
    if _none(pairs) is None:
        return column.isna()
    return (column == pairs).fillna(False).astype(bool)


def latex_table(table: pd.DataFrame, *, caption: str, label: str) -> str:
    """The study table as a booktabs table (Styler escapes the cells and headers)."""
    styler = (
        table.style.hide(axis="index")
        .format(escape="latex", formatter=lambda cell: str(cell).replace("±", r"$\pm$"))
        .format_index(escape="latex", axis="columns")
    )
    return "% needs \\usepackage{booktabs}\n" + styler.to_latex(
        hrules=True,
        column_format="ll" + "r" * (len(table.columns) - 2),
        position_float="centering",
        caption=caption,
        label=label,
    )
