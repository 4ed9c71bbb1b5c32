"""A thin Python client of the tapfl REST API (v1), for scripts and the ``tapfl`` CLI.

    from backend.client import TapflClient

    api = TapflClient.from_env()          # TAPFL_API_URL, TAPFL_TOKEN
    experiment = api.submit("demo", algorithm="tap", sweep={"seed": [41, 42]})
    rows = api.metrics(experiment["runs"][0]["id"], client=0, metric="accuracy")
    table = api.compare("accuracy", group=experiment["runs"][0]["group_id"])

Answers are the API's JSON as plain dicts and lists (see docs/API.md for their fields). A
call the API refuses raises ``ApiError`` with the HTTP status and the API's ``detail``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from backend.settings import Settings

API_PREFIX = "/api/v1"
PAGE = 100_000  # rows per request when a method reads every row of a run


class ApiError(RuntimeError):
    """The API answered with an error: ``status`` and its ``detail`` (a string, or for 422
    the list of errors with their field paths)."""

    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(f"HTTP {status}: {format_detail(detail)}")
        self.status = status
        self.detail = detail


def format_detail(detail: Any) -> str:
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg', e)}"
            if isinstance(e, dict)
            else str(e)
            for e in detail
        )
    return str(detail)


def _params(filters: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in filters.items() if v is not None}


class TapflClient:
    def __init__(
        self, api_url: str, token: str | None, timeout: float = 60.0, transport: Any = None
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(
            base_url=api_url.rstrip("/") + API_PREFIX,
            headers=headers,
            timeout=timeout,
            transport=transport,
        )

    @classmethod
    def from_env(cls, api_url: str | None = None, token: str | None = None) -> TapflClient:
        """``TAPFL_API_URL`` (default http://127.0.0.1:8000) and ``TAPFL_TOKEN`` (default:
        the token file ``tapfl up`` wrote under ``TAPFL_HOME``)."""
        settings = Settings()
        assert settings.api_url is not None
        return cls(api_url or settings.api_url, token or settings.client_token())

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> TapflClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- plumbing ------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        if response.is_error:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            raise ApiError(response.status_code, detail)
        return response

    def _get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=_params(params)).json()

    def _all(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            page = self._get(path, limit=PAGE, offset=offset, **params)
            yield from page["items"]
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                return

    # --- the API -------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        response = self.http.get("/health")
        return response.json()

    def presets(self) -> list[dict[str, Any]]:
        return self._get("/presets")["items"]

    def preset(self, name: str) -> dict[str, Any]:
        return self._get(f"/presets/{name}")

    def submit(
        self,
        preset: str,
        *,
        name: str | None = None,
        algorithm: str | None = None,
        overrides: dict[str, Any] | None = None,
        sweep: dict[str, list[Any]] | None = None,
        time_limit_s: float | None = None,
    ) -> dict[str, Any]:
        """Submit an experiment (one run, or one per sweep combination); the new experiment."""
        body = _params(
            {
                "preset": preset,
                "name": name,
                "algorithm": algorithm,
                "overrides": overrides,
                "sweep": sweep,
                "time_limit_s": time_limit_s,
            }
        )
        return self.request("POST", "/experiments", json=body).json()

    def experiments(self, *, limit: int = 50, offset: int = 0, **filters: Any) -> dict[str, Any]:
        """A page of experiments; filters: owner, status, algorithm, preset, q (text)."""
        return self._get("/experiments", limit=limit, offset=offset, **filters)

    def experiment(self, experiment_id: int) -> dict[str, Any]:
        return self._get(f"/experiments/{experiment_id}")

    def delete_experiment(self, experiment_id: int) -> None:
        self.request("DELETE", f"/experiments/{experiment_id}")

    def runs(self, *, limit: int = 50, offset: int = 0, **filters: Any) -> dict[str, Any]:
        """A page of runs; filters: experiment_id, group_id, status."""
        return self._get("/runs", limit=limit, offset=offset, **filters)

    def run(self, run_id: int) -> dict[str, Any]:
        return self._get(f"/runs/{run_id}")

    def cancel(self, run_id: int) -> dict[str, Any]:
        return self.request("POST", f"/runs/{run_id}/cancel").json()

    def retry(self, run_id: int) -> dict[str, Any]:
        return self.request("POST", f"/runs/{run_id}/retry").json()

    def logs(self, run_id: int, after: int = 0) -> list[dict[str, Any]]:
        return self._get(f"/runs/{run_id}/logs", after=after, limit=10_000)["items"]

    def metrics(self, run_id: int, **filters: Any) -> list[dict[str, Any]]:
        """Every metric row of the run that matches: client, task, model, split, metric,
        stage, round_min, round_max."""
        return list(self._all(f"/runs/{run_id}/metrics", **filters))

    def metrics_csv(self, run_id: int, **filters: Any) -> bytes:
        return self.request("GET", f"/runs/{run_id}/metrics.csv", params=_params(filters)).content

    def losses(self, run_id: int, **filters: Any) -> list[dict[str, Any]]:
        return list(self._all(f"/runs/{run_id}/losses", **filters))

    def steps(self, run_id: int, **filters: Any) -> list[dict[str, Any]]:
        """Every stage-2 step value of the run that matches: client, model, stage, term
        (``task`` for a task's loss, ``kd``, …), task."""
        return list(self._all(f"/runs/{run_id}/steps", **filters))

    def replacements(self, run_id: int, **filters: Any) -> list[dict[str, Any]]:
        return list(self._all(f"/runs/{run_id}/replacements", **filters))

    def artifacts(self, run_id: int) -> list[dict[str, Any]]:
        return self._get(f"/runs/{run_id}/artifacts")

    def artifact(self, run_id: int, name: str) -> bytes:
        return self.request("GET", f"/runs/{run_id}/artifacts/{name}").content

    def compare(
        self,
        metric: str,
        *,
        runs: list[int] | None = None,
        group: str | None = None,
        split: str = "local",
        model: str = "personal",
    ) -> dict[str, Any]:
        """Runs grouped by config without the seed, mean ± std per round and final values."""
        ids = ",".join(str(r) for r in runs) if runs else None
        return self._get("/compare", metric=metric, runs=ids, group=group, split=split,
                         model=model)  # fmt: skip

    def users(self) -> list[dict[str, Any]]:
        return self._get("/users")

    def create_user(self, name: str, admin: bool = False) -> dict[str, Any]:
        """The new user with its token (shown this once)."""
        return self.request("POST", "/users", json={"name": name, "admin": admin}).json()

    def revoke_user(self, name: str) -> dict[str, Any]:
        return self.request("POST", f"/users/{name}/revoke").json()
