"""``TapflClient``: one method per endpoint of the tapfl REST API (v1).

Methods that return rows of a run (metrics, losses, steps, replacements) read every page;
lists a person browses (experiments, runs, logs) return one page (``items`` and ``total``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Unpack

import httpx

from backend.client.env import api_url_from_env, token_from_env
from backend.client.http import PAGE_LIMIT, ApiError, Http, drop_none
from backend.client.types import (
    Artifact,
    Catalog,
    Comparison,
    Experiment,
    ExperimentFilters,
    ExperimentPage,
    ExperimentPreview,
    Health,
    LogLine,
    LogPage,
    LossFilters,
    LossRow,
    MetricFilters,
    MetricRow,
    NewUser,
    Preset,
    ReplacementFilters,
    ReplacementRow,
    Run,
    RunPage,
    StepFilters,
    StepRow,
    TrafficFilters,
    TrafficRow,
    User,
)


class TapflClient:
    """Synchronous client for the tapfl REST API; one instance per (base URL, token).

    Without arguments it finds both in the environment (``backend.client.env``).
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.token = token if token is not None else token_from_env()
        self._http = Http(
            base_url or api_url_from_env(), self.token, timeout=timeout, transport=transport
        )
        self.base_url = self._http.base_url

    @classmethod
    def from_env(cls, api_url: str | None = None, token: str | None = None) -> TapflClient:
        """``TAPFL_API_URL`` and ``TAPFL_TOKEN`` (else the token file under ``TAPFL_HOME``)."""
        return cls(api_url, token)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TapflClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- service -------------------------------------------------------------------------

    def health(self) -> Health:
        """The API's health. A degraded API answers 503 with the same body (which of the
        database and Redis it cannot reach): that is returned, not raised, so callers can
        warn and go on."""
        # Short timeout: the dashboard asks on every page whether the API is up.
        try:
            return self._http.json("GET", "/health", timeout=3.0)
        except ApiError as err:
            if err.status == 503 and isinstance(err.detail, Mapping) and "status" in err.detail:
                return dict(err.detail)  # type: ignore[return-value]
            raise

    def catalog(self) -> Catalog:
        """Algorithms, task families, metrics and presets with their default values."""
        return self._http.get("/catalog")

    def presets(self) -> list[Preset]:
        return self._http.get("/presets")["items"]

    def preset(self, name: str) -> dict[str, Any]:
        """The preset's resolved config: every field a submission can override."""
        return self._http.get(f"/presets/{name}")

    # -- experiments ---------------------------------------------------------------------

    def submit(
        self,
        preset: str,
        *,
        name: str | None = None,
        algorithm: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        sweep: Mapping[str, list[Any]] | None = None,
        time_limit_s: float | None = None,
    ) -> Experiment:
        """Submit an experiment (one run, or one per sweep combination); the new experiment.
        Fields left out keep the preset's values."""
        body = _submission(preset, name, algorithm, overrides, sweep, time_limit_s)
        return self._http.json("POST", "/experiments", json=body)

    def preview(
        self,
        preset: str,
        *,
        name: str | None = None,
        algorithm: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        sweep: Mapping[str, list[Any]] | None = None,
        time_limit_s: float | None = None,
    ) -> ExperimentPreview:
        """What ``submit`` with the same arguments would queue (the number of runs, each
        run's sweep values, the first run's resolved config); validated the same way (the
        same 422s), nothing is stored or queued."""
        body = _submission(preset, name, algorithm, overrides, sweep, time_limit_s)
        return self._http.json("POST", "/experiments/preview", json=body)

    def experiments(
        self,
        *,
        limit: int | None = None,
        offset: int | None = None,
        **filters: Unpack[ExperimentFilters],
    ) -> ExperimentPage:
        """A page of experiments, newest first."""
        return self._http.get("/experiments", limit=limit, offset=offset, **filters)

    def experiment(self, experiment_id: int) -> Experiment:
        return self._http.get(f"/experiments/{experiment_id}")

    def delete_experiment(self, experiment_id: int) -> None:
        self._http.send("DELETE", f"/experiments/{experiment_id}")

    # -- runs ----------------------------------------------------------------------------

    def runs(
        self,
        *,
        experiment_id: int | None = None,
        group_id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> RunPage:
        """A page of runs, newest first."""
        return self._http.get(
            "/runs",
            experiment_id=experiment_id,
            group_id=group_id,
            status=status,
            limit=limit,
            offset=offset,
        )

    def run(self, run_id: int) -> Run:
        """One run with its status history (``transitions``) and latest losses."""
        return self._http.get(f"/runs/{run_id}")

    def cancel_run(self, run_id: int) -> Run:
        return self._http.json("POST", f"/runs/{run_id}/cancel")

    def retry_run(self, run_id: int) -> Run:
        """Queue a failed or cancelled run again; it resumes from its last checkpoint."""
        return self._http.json("POST", f"/runs/{run_id}/retry")

    # -- a run's results -----------------------------------------------------------------

    def metrics(self, run_id: int, **filters: Unpack[MetricFilters]) -> list[MetricRow]:
        """Every evaluation value of the run that matches the filters."""
        return self._http.all_items(f"/runs/{run_id}/metrics", drop_none(filters))

    def metrics_csv(self, run_id: int, **filters: Unpack[MetricFilters]) -> bytes:
        path = f"/runs/{run_id}/metrics.csv"
        return self._http.send("GET", path, params=drop_none(filters)).content

    def losses(self, run_id: int, **filters: Unpack[LossFilters]) -> list[LossRow]:
        """Every mean local-training loss per round, client, model and task."""
        return self._http.all_items(f"/runs/{run_id}/losses", drop_none(filters))

    def steps(self, run_id: int, **filters: Unpack[StepFilters]) -> list[StepRow]:
        """Every stage-2 step value: a task's loss (term ``task``), ``kd``, …"""
        return self._http.all_items(f"/runs/{run_id}/steps", drop_none(filters))

    def replacements(
        self, run_id: int, **filters: Unpack[ReplacementFilters]
    ) -> list[ReplacementRow]:
        """TAP's replacement events (round, client, task, losses, margin, parameters)."""
        return self._http.all_items(f"/runs/{run_id}/replacements", drop_none(filters))

    def traffic(self, run_id: int, **filters: Unpack[TrafficFilters]) -> list[TrafficRow]:
        """Bytes each participant received (``down``) and uploaded (``up``) per FL round."""
        return self._http.all_items(f"/runs/{run_id}/traffic", drop_none(filters))

    def logs(
        self, run_id: int, *, after: int = 0, limit: int | None = None, level: str | None = None
    ) -> LogPage:
        """Log lines in order; pass the last ``seq`` seen as ``after`` to follow a run."""
        return self._http.get(f"/runs/{run_id}/logs", after=after or None, limit=limit, level=level)

    def all_logs(self, run_id: int, *, level: str | None = None) -> list[LogLine]:
        """Every log line of the run (the endpoint pages by ``seq``, not by offset)."""
        lines: list[LogLine] = []
        while True:
            after = lines[-1]["seq"] if lines else 0
            page = self.logs(run_id, after=after, limit=PAGE_LIMIT, level=level)
            lines.extend(page["items"])
            if not page["items"] or len(lines) >= page["total"]:
                return lines

    def logs_text(self, run_id: int) -> str:
        return self._http.send("GET", f"/runs/{run_id}/logs.txt").text

    def artifacts(self, run_id: int) -> list[Artifact]:
        return self._http.get(f"/runs/{run_id}/artifacts")

    def artifact(self, run_id: int, name: str) -> bytes:
        return self._http.send("GET", f"/runs/{run_id}/artifacts/{name}").content

    def compare(
        self,
        metric: str,
        *,
        runs: list[int] | None = None,
        group: str | None = None,
        split: str | None = None,
        model: str | None = None,
    ) -> Comparison:
        """Runs (or a sweep group) grouped by config minus seed: mean ± std per round and
        final values (the API's defaults: the personal model on local test data)."""
        ids = ",".join(str(run_id) for run_id in runs) if runs else None
        return self._http.get(
            "/compare", metric=metric, runs=ids, group=group, split=split, model=model
        )

    # -- users (admins) ------------------------------------------------------------------

    def me(self) -> User:
        """The user this client's token belongs to (401 for an unknown or revoked token)."""
        return self._http.get("/users/me")

    def users(self) -> list[User]:
        return self._http.get("/users")

    def create_user(self, name: str, admin: bool = False) -> NewUser:
        """The new user with its token (shown this once)."""
        return self._http.json("POST", "/users", json={"name": name, "admin": admin})

    def revoke_user(self, name: str) -> User:
        return self._http.json("POST", f"/users/{name}/revoke")


def _submission(
    preset: str,
    name: str | None,
    algorithm: str | None,
    overrides: Mapping[str, Any] | None,
    sweep: Mapping[str, list[Any]] | None,
    time_limit_s: float | None,
) -> dict[str, Any]:
    """The body of ``POST /experiments`` (and of its preview); fields left out keep the
    preset's values."""
    return drop_none(
        {
            "preset": preset,
            "name": name,
            "algorithm": algorithm,
            "overrides": dict(overrides) if overrides else None,
            "sweep": dict(sweep) if sweep else None,
            "time_limit_s": time_limit_s,
        }
    )
