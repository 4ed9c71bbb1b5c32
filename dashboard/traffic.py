"""A run's communication cost: the bytes of trainable tensors each FL round sent between
server and clients (``round_traffic`` rows), fetched and cached as the other run rows are."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data
from dashboard.data import FINISHED_TTL_S, LIVE_TTL_S, Run, RunVersion

COLUMNS = ["round", "client", "direction", "bytes", "parameters"]
DIRECTIONS = ("down", "up")
MB = 1e6  # decimal megabytes, as papers report communication


def traffic(run: Run | int, *, live: bool | None = None) -> pd.DataFrame:
    """Every traffic row of the run (round, client, direction, bytes, parameters)."""
    run_id, version, live = data._versioned(run, live)
    fetch = _traffic_live if live else _traffic_finished
    return fetch(*data.target(), run_id, version)


def _frame(base_url: str, token: str, run_id: int) -> pd.DataFrame:
    rows = data._client(base_url, token).traffic(run_id)
    return pd.DataFrame(rows, columns=COLUMNS)


@st.cache_data(ttl=LIVE_TTL_S, show_spinner=False)
def _traffic_live(base_url: str, token: str, run_id: int, version: RunVersion) -> pd.DataFrame:
    return _frame(base_url, token, run_id)


@st.cache_data(ttl=FINISHED_TTL_S, show_spinner=False)
def _traffic_finished(base_url: str, token: str, run_id: int, version: RunVersion) -> pd.DataFrame:
    return _frame(base_url, token, run_id)


def cumulative(frame: pd.DataFrame) -> pd.DataFrame:
    """Per round and direction, the MB sent in that round and in every round up to it
    (columns round, direction, mb, cumulative_mb); rounds ascending."""
    if frame.empty:
        return pd.DataFrame(columns=["round", "direction", "mb", "cumulative_mb"])
    per_round = frame.groupby(["direction", "round"], as_index=False)["bytes"].sum()
    per_round = per_round.sort_values(["direction", "round"])
    per_round["mb"] = per_round["bytes"] / MB
    per_round["cumulative_mb"] = per_round.groupby("direction")["mb"].cumsum()
    return per_round[["round", "direction", "mb", "cumulative_mb"]].reset_index(drop=True)


def total_by_round(frame: pd.DataFrame) -> pd.Series:
    """Cumulative MB both ways after each round, indexed by round."""
    if frame.empty:
        return pd.Series(dtype=float)
    return (frame.groupby("round")["bytes"].sum().sort_index().cumsum() / MB).rename("mb")


def cost_vs_metric(curves: pd.DataFrame, traffic_by_group: dict[str, pd.Series]) -> pd.DataFrame:
    """Per group, metric and evaluated round: the metric's mean over clients and tasks
    against the MB sent so far (the group's runs' mean). ``curves`` is the compare view's
    curves frame (label, metric, round, mean); rounds without traffic (stage 2, local
    training) count as what was sent up to them."""
    columns = ["label", "metric", "round", "mean", "cumulative_mb"]
    rows = []
    for (label, metric), part in curves.groupby(["label", "metric"], sort=True):
        sent = traffic_by_group.get(str(label), pd.Series(dtype=float))
        means = part.groupby("round")["mean"].mean().sort_index()
        for round_no, mean in means.items():
            upto = sent[sent.index <= round_no]
            rows.append((label, metric, round_no, mean, float(upto.iloc[-1]) if len(upto) else 0.0))
    return pd.DataFrame(rows, columns=columns)


def group_traffic(run_ids: list[int]) -> pd.Series:
    """Cumulative MB both ways after each round, the mean over ``run_ids`` (seeds)."""
    series = [total_by_round(traffic(run_id)) for run_id in run_ids]
    series = [s for s in series if not s.empty]
    if not series:
        return pd.Series(dtype=float)
    return pd.concat(series, axis=1).ffill().mean(axis=1).sort_index()
