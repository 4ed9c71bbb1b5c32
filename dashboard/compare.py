"""Pure functions from the API's comparisons (``GET /compare``) to the frames the Compare
page shows: curves with bands, final values with the best marked, the personalization vs
generalization trade-off, the verdict of one group ("ours", TAP by default) against every
other group, and the warnings that say when the comparison is not a fair one.

A comparison holds groups of runs (one config, several seeds); each group has a curve and
a final value (mean ± std over seeds, and each run's own value) per client and task.
Nothing here calls the API.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from backend.client.types import Catalog, Comparison

CURVE_COLUMNS = ["label", "algorithm", "client", "task", "metric", "round", "mean", "std", "n"]
FINAL_COLUMNS = ["label", "algorithm", "client", "task", "metric", "mean", "std", "n"]
RUN_COLUMNS = ["label", "algorithm", "client", "task", "metric", "run_id", "seed", "value", "round"]
BEST_MARK = "★"
TAP = "tap"  # "ours" unless the user picks another group
SPLITS = {"local": "personalization", "pooled": "generalization"}
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # a fixed seed: the same runs always get the same verdict
WIN, TIE, LOSS = "win", "tie", "loss"
ONE_SEED = "one seed: no verdict"
NO_PAIRS = "no common seeds: no verdict"


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
    if not math.isfinite(mean):
        return "not finite"
    if n > 1 and not math.isnan(std):
        return f"{mean:.4f} ± {std:.4f}"
    return f"{mean:.4f}"


def _as_float(value: object) -> float:
    """A served value as a float: null (not finite) is NaN."""
    return math.nan if value is None else float(value)  # type: ignore[arg-type]


def final_table(finals: pd.DataFrame, better: dict[str, bool]) -> pd.DataFrame:
    """Client, task and metric as rows, one column per group ("mean ± std"), the best
    group's cell marked with ★ and named in a ``best`` column."""
    if finals.empty:
        return pd.DataFrame(columns=["client", "task", "metric", "best"])
    labels = list(dict.fromkeys(finals["label"]))
    out = []
    for (client, task, metric), rows in finals.groupby(["client", "task", "metric"], sort=True):
        by_label = rows.set_index("label")
        means = pd.to_numeric(by_label["mean"], errors="coerce").dropna()  # null: not finite
        best = ""
        if not means.empty:
            best = means.idxmax() if better.get(str(metric), True) else means.idxmin()
        row: dict[str, object] = {"client": client, "task": task, "metric": metric}
        for label in labels:
            if label not in by_label.index:
                row[label] = ""
                continue
            one = by_label.loc[label]
            mean, std = (_as_float(one[c]) for c in ("mean", "std"))
            cell = format_mean_std(mean, std, int(one["n"]))
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


def runs_frame(comparisons: Iterable[Comparison]) -> pd.DataFrame:
    """One row per group, client, task and run: the run's final value and its seed."""
    rows = [
        (
            group["label"],
            group["algorithm"],
            final["client"],
            final["task"],
            comp["metric"],
            value["run_id"],
            value["seed"],
            value["value"],
            value["round"],
        )
        for comp in comparisons
        for group in comp["groups"]
        for final in group["final"]
        for value in final.get("values", [])
    ]
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def task_mains(task_metrics: Mapping[str, Sequence[str]], catalog: Catalog) -> dict[str, str]:
    """task -> the metric it is judged on: its family's main metric in the catalog, else
    its first quality metric. Never a loss: a task that reports only losses has none."""
    mains = [m["name"] for m in catalog["metrics"] if m["main_for"]]
    quality = [m["name"] for m in catalog["metrics"] if m["quality"]]
    out = {}
    for task, metrics in task_metrics.items():
        main = next((m for m in (*mains, *quality) if m in metrics), None)
        if main is not None:
            out[task] = main
    return out


def main_only(frame: pd.DataFrame, mains: Mapping[str, str]) -> pd.DataFrame:
    """The rows of each task's own main metric: one metric per task, never a loss beside
    an accuracy (every task is fetched for every main metric, and reports some of them)."""
    if frame.empty:
        return frame
    pairs = zip(frame["task"], frame["metric"], strict=True)
    keep = [mains.get(str(task)) == metric for task, metric in pairs]
    return frame[keep].reset_index(drop=True)


def default_ours(groups: Sequence[tuple[str, str]]) -> int:
    """The index of the group to weigh against the others: the first TAP group, else the
    first. ``groups``: (label, algorithm) pairs."""
    return next((i for i, (_, algorithm) in enumerate(groups) if algorithm == TAP), 0)


VERDICT_COLUMNS = [
    "vs",
    "on",
    "client",
    "task",
    "metric",
    "ours",
    "theirs",
    "difference",
    "ci_low",
    "ci_high",
    "seeds",
    "result",
]


def _by_seed(rows: pd.DataFrame) -> dict[int, float]:
    """seed -> the final value (the mean if a seed was run twice); NaN where a run's value
    was not finite (null)."""
    values = pd.to_numeric(rows["value"], errors="coerce")
    means = values.groupby(rows["seed"]).mean(skipna=False)
    return {int(s): float(v) for s, v in means.items()}


def bootstrap_ci(differences: Sequence[float]) -> tuple[float, float]:
    """The 95% interval of the mean of paired differences over resampled seeds."""
    d = np.asarray(differences, dtype=float)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    picks = rng.integers(0, len(d), size=(BOOTSTRAP_RESAMPLES, len(d)))
    low, high = np.percentile(d[picks].mean(axis=1), [2.5, 97.5])
    return float(low), float(high)


def _judge(ours: dict[int, float], theirs: dict[int, float], higher: bool) -> dict[str, Any]:
    """One client-task pair: means over seeds, their difference (ours - theirs), the 95%
    bootstrap interval of the difference over runs paired by seed, and the result."""
    mean_ours = float(np.mean(list(ours.values())))
    mean_theirs = float(np.mean(list(theirs.values())))
    common = sorted(set(ours) & set(theirs))
    out: dict[str, Any] = {
        "ours": mean_ours,
        "theirs": mean_theirs,
        "difference": mean_ours - mean_theirs,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "seeds": len(common),
    }
    if len(ours) < 2 or len(theirs) < 2:
        return out | {"result": ONE_SEED}
    if len(common) < 2:
        return out | {"result": NO_PAIRS}
    low, high = bootstrap_ci([ours[s] - theirs[s] for s in common])
    out |= {"ci_low": low, "ci_high": high}
    if low <= 0.0 <= high:
        return out | {"result": TIE}
    better = (low > 0) if higher else (high < 0)
    return out | {"result": WIN if better else LOSS}


def _not_finite(values: dict[int, float]) -> bool:
    return not all(math.isfinite(v) for v in values.values())


def _not_counted(result: str, ours: float = math.nan, theirs: float = math.nan) -> dict[str, Any]:
    return {
        "ours": ours,
        "theirs": theirs,
        "difference": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "seeds": 0,
        "result": f"{result}: not counted",
    }


def _pair(
    ours: str,
    rival: str,
    mine: dict[int, float] | None,
    theirs: dict[int, float] | None,
    higher: bool,
) -> dict[str, Any]:
    if mine is not None and theirs is not None:
        # A diverged seed (NaN or infinite value, served as null) has no place in a mean.
        diverged = [label for label, v in ((ours, mine), (rival, theirs)) if _not_finite(v)]
        if diverged:
            return _not_counted(f"not finite in {' and '.join(diverged)}")
        return _judge(mine, theirs, higher)
    present = float(np.mean(list((mine or theirs or {}).values())))
    return _not_counted(
        f"missing in {ours if mine is None else rival}",
        ours=present if mine else math.nan,
        theirs=present if theirs else math.nan,
    )


def verdict(
    runs: Mapping[str, pd.DataFrame], ours: str, better: Mapping[str, bool]
) -> pd.DataFrame:
    """``ours`` (a group label) against each other group, per split (``runs``: split ->
    ``runs_frame``), client and task: a row with the means over seeds, the difference and
    its tie band, and the result (win, tie, loss; no verdict with one seed; a pair that
    one group lacks is ``missing in …``, one with a run whose value is not finite is ``not
    finite in …``; neither is counted). A lower-is-better metric wins
    when it is lower."""
    cells: dict[str, dict[tuple[str, int, str, str], dict[int, float]]] = {}
    rivals: dict[str, None] = {}
    for split, frame in runs.items():
        if frame.empty or ours not in set(frame["label"]):
            continue
        cells[split] = {
            (str(label), int(c), str(t), str(m)): _by_seed(group)
            for (label, c, t, m), group in frame.groupby(
                ["label", "client", "task", "metric"], sort=False
            )
        }
        rivals |= {str(label): None for label in frame["label"] if label != ours}
    rows = []
    for rival in rivals:  # a rival's splits side by side, rivals in the groups' order
        for split, here in cells.items():
            pairs = sorted({key[1:] for key in here if key[0] in (ours, rival)})
            for client, task, metric in pairs:
                row: dict[str, Any] = {
                    "vs": rival,
                    "on": SPLITS.get(split, split),
                    "client": client,
                    "task": task,
                    "metric": metric,
                }
                mine = here.get((ours, client, task, metric))
                theirs = here.get((rival, client, task, metric))
                rows.append(row | _pair(ours, rival, mine, theirs, better.get(metric, True)))
    return pd.DataFrame(rows, columns=VERDICT_COLUMNS)


SUMMARY_COLUMNS = ["vs", "on", "wins", "ties", "losses", "no verdict", "not counted", "pairs"]


def verdict_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Wins, ties and losses of ours per rival and split, over the verdict's rows;
    ``pairs`` counts the client-task pairs both groups have."""
    out = []
    for (rival, on), rows in table.groupby(["vs", "on"], sort=False):
        results = rows["result"]
        missing = int(results.str.endswith("not counted").sum())
        out.append(
            {
                "vs": rival,
                "on": on,
                "wins": int((results == WIN).sum()),
                "ties": int((results == TIE).sum()),
                "losses": int((results == LOSS).sum()),
                "no verdict": int(results.str.endswith("no verdict").sum()),
                "not counted": missing,
                "pairs": len(rows) - missing,
            }
        )
    return pd.DataFrame(out, columns=SUMMARY_COLUMNS)


def _plural(n: int, word: str) -> str:
    if n == 1:
        return f"{n} {word}"
    return f"{n} {word}es" if word.endswith("s") else f"{n} {word}s"


def headline(ours: str, summary: pd.DataFrame) -> str:
    """One line per rival, from the summary table (so the two always agree)."""
    lines = []
    for rival, rows in summary.groupby("vs", sort=False):
        parts = []
        for row in rows.to_dict("records"):
            part = (
                f"{row['on']}: {_plural(row['wins'], 'win')}, {_plural(row['ties'], 'tie')}, "
                f"{_plural(row['losses'], 'loss')} of {row['pairs']} client-task pairs"
            )
            if row["no verdict"]:
                part += f" ({row['no verdict']} without a verdict: one seed)"
            if row["not counted"]:
                part += f", {row['not counted']} not counted (missing or not finite in one group)"
            parts.append(part)
        lines.append(f"**{ours}** vs **{rival}** · " + " · ".join(parts))
    return "  \n".join(lines)


def warnings(comparisons: Iterable[Comparison]) -> list[str]:
    """What makes the comparison unfair or partial: groups that differ in more than the
    algorithm and the seed, groups of one seed, runs left out (not succeeded)."""
    out: list[str] = []
    seen_keys: set[str] = set()
    one_seed: dict[str, None] = {}
    excluded: dict[int, str] = {}
    for comp in comparisons:
        labels = [group["label"] for group in comp["groups"]]
        for item in comp.get("differing", []):
            if item["key"] in seen_keys:
                continue
            seen_keys.add(item["key"])
            values = ", ".join(
                f"{label}: {_value(v)}" for label, v in zip(labels, item["values"], strict=True)
            )
            out.append(
                f"The groups differ in `{item['key']}` ({values}), not only in the algorithm "
                "and the seed: the verdict compares different experiments."
            )
        for group in comp["groups"]:
            if len(set(group["seeds"])) < 2:
                one_seed[group["label"]] = None
        for item in comp.get("excluded", []):
            excluded[item["run_id"]] = item["status"]
    for label in one_seed:
        out.append(f"`{label}` has one seed: no verdict on it (it needs two seeds or more).")
    if excluded:
        listed = ", ".join(f"#{run_id} ({status})" for run_id, status in sorted(excluded.items()))
        out.append(f"Left out, as they have not succeeded: {listed}.")
    return out


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _number(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.4f}"


def verdict_display(table: pd.DataFrame, ours: str) -> pd.DataFrame:
    """The verdict's rows as the page shows them: numbers to four places, the tie band as
    an interval, the metric marked when lower is better is told by the caption."""
    out = pd.DataFrame(
        {
            "vs": table["vs"],
            "on": table["on"],
            "client": table["client"],
            "task": table["task"],
            "metric": table["metric"],
            ours: table["ours"].map(_number),
            "theirs": table["theirs"].map(_number),
            "difference": table["difference"].map(lambda d: "" if math.isnan(d) else f"{d:+.4f}"),
            "95% CI (tie band)": [
                "" if math.isnan(lo) else f"[{lo:+.4f}, {hi:+.4f}]"
                for lo, hi in zip(table["ci_low"], table["ci_high"], strict=True)
            ],
            "seeds paired": table["seeds"],
            "result": table["result"],
        }
    )
    return out
