"""Pure functions from the API's comparisons (``GET /compare``) to the frames the Compare
page shows: curves with bands, final values with the best marked, the personalization vs
generalization trade-off, and the verdict "did TAP beat FedAvg and local here?".

A comparison holds groups of runs (one config, several seeds); each group has a curve and
a final value (mean ± std over seeds) per client and task. Nothing here calls the API.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd

from backend.client.types import Comparison

CURVE_COLUMNS = ["label", "algorithm", "client", "task", "metric", "round", "mean", "std", "n"]
FINAL_COLUMNS = ["label", "algorithm", "client", "task", "metric", "mean", "std", "n"]
BEST_MARK = "★"
# The three algorithms the summary weighs against each other.
TAP, FEDAVG, LOCAL = "tap", "fedavg", "local"


def curves_frame(comparisons: Iterable[Comparison]) -> pd.DataFrame:
    """One row per group, client, task and evaluated round: mean, std and n over seeds."""
    rows = [
        (
            group["label"],
            group["algorithm"],
            curve["client"],
            curve["task"],
            comp["metric"],
            r,
            m,
            s,
            n,
        )
        for comp in comparisons
        for group in comp["groups"]
        for curve in group["curves"]
        for r, m, s, n in zip(curve["rounds"], curve["mean"], curve["std"], curve["n"], strict=True)
    ]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def finals_frame(comparisons: Iterable[Comparison]) -> pd.DataFrame:
    """One row per group, client and task: the final value's mean, std and n over seeds."""
    rows = [
        (
            group["label"],
            group["algorithm"],
            final["client"],
            final["task"],
            comp["metric"],
            final["mean"],
            final["std"],
            final["n"],
        )
        for comp in comparisons
        for group in comp["groups"]
        for final in group["final"]
    ]
    return pd.DataFrame(rows, columns=FINAL_COLUMNS)


def higher_is_better(comparisons: Iterable[Comparison]) -> dict[str, bool]:
    return {comp["metric"]: comp["higher_is_better"] for comp in comparisons}


def format_mean_std(mean: float, std: float, n: int) -> str:
    if n > 1 and not math.isnan(std):
        return f"{mean:.4f} ± {std:.4f}"
    return f"{mean:.4f}"


def final_table(finals: pd.DataFrame, better: dict[str, bool]) -> pd.DataFrame:
    """Client, task and metric as rows, one column per group ("mean ± std"), the best
    group's cell marked with ★ and named in a ``best`` column."""
    if finals.empty:
        return pd.DataFrame(columns=["client", "task", "metric", "best"])
    labels = list(dict.fromkeys(finals["label"]))
    out = []
    for (client, task, metric), rows in finals.groupby(["client", "task", "metric"], sort=True):
        by_label = rows.set_index("label")
        means = by_label["mean"]
        best = means.idxmax() if better.get(str(metric), True) else means.idxmin()
        row: dict[str, object] = {"client": client, "task": task, "metric": metric}
        for label in labels:
            if label not in by_label.index:
                row[label] = ""
                continue
            one = by_label.loc[label]
            cell = format_mean_std(float(one["mean"]), float(one["std"]), int(one["n"]))
            row[label] = f"{BEST_MARK} {cell}" if label == best else cell
        row["best"] = best
        out.append(row)
    return pd.DataFrame(out, columns=["client", "task", "metric", *labels, "best"])


def tradeoff_frame(local: pd.DataFrame, pooled: pd.DataFrame) -> pd.DataFrame:
    """Per group, client and task: personalization (final value on the client's own test
    data) against generalization (on every client's test data of that task)."""
    keys = ["label", "algorithm", "client", "task", "metric"]
    merged = local[[*keys, "mean"]].merge(
        pooled[[*keys, "mean"]], on=keys, suffixes=("_local", "_pooled")
    )
    return merged.rename(columns={"mean_local": "personalization", "mean_pooled": "generalization"})


def _verdict(diff: float, noise: float) -> str:
    """``diff`` is signed so that > 0 means TAP did better."""
    if abs(diff) <= noise:
        return f"tie ({diff:+.4f})"
    return f"{'better' if diff > 0 else 'worse'} ({diff:+.4f})"


def summary(local: pd.DataFrame, pooled: pd.DataFrame, better: dict[str, bool]) -> pd.DataFrame:
    """Did TAP beat FedAvg and local here? One row per client, task and metric.

    From the final values on the client's own test data (personalization): ``vs fedavg``
    and ``vs local`` say better, worse or tie, where a tie is a difference within the
    combined standard deviation of the two means over seeds (no margin with one seed).
    ``generalization vs fedavg`` is the same comparison on the pooled test data: what
    TAP's personalization cost (or gained) on everyone's data. The frame is empty unless
    the comparison holds a TAP group and at least one of FedAvg and local.
    """
    algorithms = set(local["algorithm"])
    rivals = [a for a in (FEDAVG, LOCAL) if a in algorithms]
    if TAP not in algorithms or not rivals:
        return pd.DataFrame()
    rows = []
    for (client, task, metric), group in local.groupby(["client", "task", "metric"], sort=True):
        sign = 1.0 if better.get(str(metric), True) else -1.0
        first = group.drop_duplicates("algorithm").set_index("algorithm")
        if TAP not in first.index:
            continue
        tap = first.loc[TAP]
        row: dict[str, object] = {"client": client, "task": task, "metric": metric}
        row[TAP] = float(tap["mean"])
        beats = []
        for rival in rivals:
            if rival not in first.index:
                row[rival], row[f"vs {rival}"] = math.nan, ""
                continue
            other = first.loc[rival]
            diff = sign * (float(tap["mean"]) - float(other["mean"]))
            row[rival] = float(other["mean"])
            row[f"vs {rival}"] = _verdict(diff, _noise(tap, other))
            beats.append(row[f"vs {rival}"].startswith("better"))
        row["generalization vs fedavg"] = _generalization(pooled, client, task, metric, sign)
        row["TAP beat all"] = "yes" if beats and all(beats) else "no"
        rows.append(row)
    return pd.DataFrame(rows)


def _noise(a: pd.Series, b: pd.Series) -> float:
    if int(a["n"]) < 2 or int(b["n"]) < 2:
        return 0.0
    return math.hypot(float(a["std"]), float(b["std"]))


def _generalization(pooled: pd.DataFrame, client: int, task: str, metric: str, sign: float) -> str:
    here = pooled[
        (pooled["client"] == client) & (pooled["task"] == task) & (pooled["metric"] == metric)
    ].drop_duplicates("algorithm")
    by_algorithm = here.set_index("algorithm")
    if TAP not in by_algorithm.index or FEDAVG not in by_algorithm.index:
        return ""
    tap, fedavg = by_algorithm.loc[TAP], by_algorithm.loc[FEDAVG]
    return _verdict(sign * (float(tap["mean"]) - float(fedavg["mean"])), _noise(tap, fedavg))


def headline(table: pd.DataFrame) -> str:
    """One sentence over the summary table."""
    if table.empty:
        return ""
    n = len(table)
    rivals = [rival for rival in (FEDAVG, LOCAL) if f"vs {rival}" in table]
    wins_all = int((table["TAP beat all"] == "yes").sum())
    parts = [f"TAP beat {' and '.join(rivals)} on **{wins_all} of {n}** client-task pairs"]
    for rival in rivals:
        column = f"vs {rival}"
        if column in table:
            wins = int(table[column].str.startswith("better").sum())
            ties = int(table[column].str.startswith("tie").sum())
            parts.append(f"vs {rival}: better on {wins}, tie on {ties}, worse on {n - wins - ties}")
    return " · ".join(parts) + "."
