"""The dashboard's only door to tapfl: a small typed client over the REST API (v1).

Every HTTP call the dashboard makes lives here. Pages never see httpx: a failed call raises
``ApiError`` carrying the HTTP status and the API's ``detail``, so a page can put a
validation message next to the field it is about, or say plainly that the API is down.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal, NotRequired, TypedDict

import httpx

DEFAULT_API_URL = "http://127.0.0.1:8000"
API_PREFIX = "/api/v1"
PAGE_LIMIT = 10_000  # rows per request when reading all metrics, losses or steps of a run

RunStatus = Literal["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]
RUN_STATUSES: tuple[RunStatus, ...] = (
    "queued",
    "running",
    "cancelling",
    "succeeded",
    "failed",
    "cancelled",
)
# A run in one of these may still change, so pages that show it keep refreshing.
ACTIVE_STATUSES: frozenset[str] = frozenset({"queued", "running", "cancelling"})


class Health(TypedDict):
    status: Literal["ok", "degraded"]
    database: bool
    redis: bool


class Preset(TypedDict):
    name: str
    description: str
    algorithm: NotRequired[str]
    rounds: NotRequired[int]
    clients: NotRequired[int]
    backbone: NotRequired[str]


class Run(TypedDict):
    id: int
    experiment_id: int
    experiment_name: NotRequired[str | None]
    preset: NotRequired[str | None]
    algorithm: str
    seed: int
    status: RunStatus
    stage: str | None
    round: int | None
    total_rounds: int | None
    progress: NotRequired[float | None]
    eta_s: NotRequired[float | None]
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    config: NotRequired[dict[str, Any] | None]
    group_id: NotRequired[str | None]
    sweep: NotRequired[dict[str, Any] | None]
    owner: NotRequired[str | None]
    attempt: NotRequired[int]
    worker: NotRequired[str | None]


class Experiment(TypedDict):
    id: int
    name: str
    preset: str
    owner: NotRequired[str | None]
    created_at: str
    runs: list[Run]


class MetricRow(TypedDict):
    round: int
    stage: str
    client: int
    task: str
    model: str
    split: str
    metric: str
    value: float


class LossRow(TypedDict):
    round: int
    stage: str
    client: int
    model: str
    task: str
    loss: float
    steps: int


class StepRow(TypedDict):
    """One value of one stage-2 optimizer step: a task's loss (term ``task``) or a term the
    algorithm adds to it (``kd``: TAP's λ·KD, as added)."""

    round: int
    stage: str
    client: int
    model: str
    step: int
    micro_batches: int
    term: str
    task: str
    value: float


class LogLine(TypedDict):
    seq: int
    time: str
    level: str
    source: str
    message: str


class ReplacementRow(TypedDict):
    round: int
    client: int
    task: str
    global_loss: float
    personal_loss: float
    margin: float
    parameters_copied: int


class CompareCurve(TypedDict):
    client: int
    task: str
    rounds: list[int]
    mean: list[float]
    std: list[float]
    n: list[int]


class CompareFinal(TypedDict):
    client: int
    task: str
    mean: float
    std: float
    n: int


class CompareGroup(TypedDict):
    key: str
    algorithm: str
    label: str
    run_ids: list[int]
    seeds: list[int]
    curves: list[CompareCurve]
    final: list[CompareFinal]


class Comparison(TypedDict):
    """``GET /compare``: runs grouped by resolved config minus seed, mean ± std over seeds."""

    metric: str
    split: str
    model: str
    higher_is_better: bool
    groups: list[CompareGroup]


class RunPage(TypedDict):
    items: list[Run]
    total: int


class ExperimentPage(TypedDict):
    items: list[Experiment]
    total: int


class LogPage(TypedDict):
    items: list[LogLine]
    total: int


class MetricPage(TypedDict):
    items: list[MetricRow]
    total: int


class LossPage(TypedDict):
    items: list[LossRow]
    total: int


class StepPage(TypedDict):
    items: list[StepRow]
    total: int


class ApiError(Exception):
    """A call to the tapfl API failed; ``status`` is None when no HTTP answer came back."""

    def __init__(self, message: str, *, status: int | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.detail = detail

    def field_errors(self) -> dict[str, list[str]]:
        """FastAPI validation messages keyed by where in the request body they point.

        ``{"loc": ["body", "overrides", "rounds"], "msg": ...}`` is keyed
        ``"overrides.rounds"``; list indices are dropped (``sweep.seed``, not
        ``sweep.seed.1``) and messages about the body as a whole go under ``""``.
        A string ``detail`` (not a validation list) also goes under ``""``.
        """
        errors: dict[str, list[str]] = {}
        if isinstance(self.detail, list):
            for item in self.detail:
                if not isinstance(item, Mapping):
                    continue
                loc = [str(part) for part in item.get("loc", []) if not isinstance(part, int)]
                if loc and loc[0] == "body":
                    loc = loc[1:]
                errors.setdefault(".".join(loc), []).append(str(item.get("msg", item)))
        elif self.detail:
            errors[""] = [str(self.detail)]
        return errors


class ApiUnreachable(ApiError):
    """No HTTP answer at all: the API is not running, not at that address, or timed out."""


class Unauthorized(ApiError):
    """401/403: the token is missing, wrong, or not allowed to do this."""


def is_missing_route(err: ApiError) -> bool:
    """A 404 from the router itself (FastAPI's bare "Not Found"): this API lacks the
    endpoint, as opposed to a 404 about a run or group that does not exist."""
    return err.status == 404 and err.detail in ("Not Found", None, "")


def api_url_from_env() -> str:
    return os.environ.get("TAPFL_API_URL", "").strip() or DEFAULT_API_URL


def token_from_env() -> str:
    """``TAPFL_TOKEN``, else the admin token the API wrote under ``TAPFL_HOME`` (compose)."""
    from backend.settings import Settings  # settings only: the dashboard never touches SQL

    return (Settings().client_token() or "").strip()


def _drop_none(params: Mapping[str, Any]) -> dict[str, Any]:
    # The API reads an empty query parameter as a value; leave unset filters out instead.
    return {key: value for key, value in params.items() if value is not None and value != ""}


class TapflClient:
    """Synchronous client for the tapfl REST API; one instance per (base URL, token)."""

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = (base_url or api_url_from_env()).rstrip("/")
        self.token = token if token is not None else token_from_env()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.Client(
            base_url=self.base_url + API_PREFIX,
            headers=headers,
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> TapflClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- service -----------------------------------------------------------------------

    def health(self) -> Health:
        """The API's health. A degraded API answers 503 with the same body (which of the
        database and Redis it cannot reach): that is returned, not raised, so pages can
        warn and go on."""
        # Short timeout: the dashboard asks on every page to say whether the API is up.
        try:
            return self._request("GET", "/health", timeout=3.0)
        except ApiError as err:
            if err.status == 503 and isinstance(err.detail, Mapping) and "status" in err.detail:
                return dict(err.detail)  # type: ignore[return-value]
            raise

    def presets(self) -> list[Preset]:
        return self._request("GET", "/presets")["items"]

    # -- experiments -------------------------------------------------------------------

    def create_experiment(
        self,
        preset: str,
        *,
        name: str | None = None,
        algorithm: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        sweep: Mapping[str, list[Any]] | None = None,
    ) -> Experiment:
        body = _drop_none(
            {
                "preset": preset,
                "name": name,
                "algorithm": algorithm,
                "overrides": dict(overrides) if overrides else None,
                "sweep": dict(sweep) if sweep else None,
            }
        )
        return self._request("POST", "/experiments", json=body)

    def experiments(self, *, limit: int | None = None, offset: int | None = None) -> ExperimentPage:
        params = _drop_none({"limit": limit, "offset": offset})
        return self._request("GET", "/experiments", params=params)

    # -- runs --------------------------------------------------------------------------

    def runs(
        self,
        *,
        experiment_id: int | None = None,
        group_id: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> RunPage:
        params = {
            "experiment_id": experiment_id,
            "group_id": group_id,
            "status": status,
            "limit": limit,
            "offset": offset,
        }
        return self._request("GET", "/runs", params=_drop_none(params))

    def run(self, run_id: int) -> Run:
        return self._request("GET", f"/runs/{run_id}")

    def cancel_run(self, run_id: int) -> Run:
        return self._request("POST", f"/runs/{run_id}/cancel")

    def retry_run(self, run_id: int) -> Run:
        return self._request("POST", f"/runs/{run_id}/retry")

    def metrics(
        self,
        run_id: int,
        *,
        client: int | None = None,
        task: str | None = None,
        model: str | None = None,
        split: str | None = None,
        metric: str | None = None,
        stage: str | None = None,
        round_min: int | None = None,
        round_max: int | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> MetricPage:
        """One page of evaluation values (the API's default page is 10,000 rows)."""
        params = _metric_params(client, task, model, split, metric, stage, round_min, round_max)
        params.update(_drop_none({"limit": limit, "offset": offset}))
        return self._request("GET", f"/runs/{run_id}/metrics", params=params)

    def all_metrics(self, run_id: int, **filters: Any) -> list[MetricRow]:
        """Every evaluation value that matches ``filters``, page after page."""
        return self._all_items(f"/runs/{run_id}/metrics", _drop_none(filters))

    def metrics_csv(
        self,
        run_id: int,
        *,
        client: int | None = None,
        task: str | None = None,
        model: str | None = None,
        split: str | None = None,
        metric: str | None = None,
        stage: str | None = None,
        round_min: int | None = None,
        round_max: int | None = None,
    ) -> bytes:
        params = _metric_params(client, task, model, split, metric, stage, round_min, round_max)
        response = self._send("GET", f"/runs/{run_id}/metrics.csv", params=params)
        return response.content

    def losses(
        self,
        run_id: int,
        *,
        client: int | None = None,
        task: str | None = None,
        model: str | None = None,
        stage: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> LossPage:
        params = _drop_none(
            {
                "client": client,
                "task": task,
                "model": model,
                "stage": stage,
                "limit": limit,
                "offset": offset,
            }
        )
        return self._request("GET", f"/runs/{run_id}/losses", params=params)

    def all_losses(self, run_id: int, **filters: Any) -> list[LossRow]:
        return self._all_items(f"/runs/{run_id}/losses", _drop_none(filters))

    def steps(
        self,
        run_id: int,
        *,
        client: int | None = None,
        model: str | None = None,
        stage: str | None = None,
        term: str | None = None,
        task: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> StepPage:
        """One page of stage-2 step values (per optimizer step: task losses, λ·KD, …)."""
        params = _drop_none(
            {
                "client": client,
                "model": model,
                "stage": stage,
                "term": term,
                "task": task,
                "limit": limit,
                "offset": offset,
            }
        )
        return self._request("GET", f"/runs/{run_id}/steps", params=params)

    def all_steps(self, run_id: int, **filters: Any) -> list[StepRow]:
        return self._all_items(f"/runs/{run_id}/steps", _drop_none(filters))

    def logs(
        self, run_id: int, *, after: int = 0, limit: int | None = None, level: str | None = None
    ) -> LogPage:
        """Log lines in order; pass the last ``seq`` seen as ``after`` to follow a run."""
        params = _drop_none({"after": after or None, "limit": limit, "level": level})
        return self._request("GET", f"/runs/{run_id}/logs", params=params)

    def logs_text(self, run_id: int) -> str:
        return self._send("GET", f"/runs/{run_id}/logs.txt").text

    def replacements(self, run_id: int) -> list[ReplacementRow]:
        """TAP's replacement events (round, client, task, losses, margin, parameters)."""
        body = self._request("GET", f"/runs/{run_id}/replacements")
        return body["items"] if isinstance(body, Mapping) else body

    def compare(
        self,
        *,
        metric: str,
        runs: list[int] | None = None,
        group: str | None = None,
        split: str | None = None,
        model: str | None = None,
    ) -> Comparison:
        """Runs (or a sweep group) grouped by config minus seed: curves and final values."""
        params = _drop_none(
            {
                "metric": metric,
                "runs": ",".join(str(run_id) for run_id in runs) if runs else None,
                "group": group,
                "split": split,
                "model": model,
            }
        )
        return self._request("GET", "/compare", params=params)

    # -- plumbing ----------------------------------------------------------------------

    def _all_items(self, path: str, params: dict[str, Any]) -> list[Any]:
        # Page until the API's total is reached; an empty page ends it in any case, so a
        # total that grows while a run writes rows cannot loop forever.
        items: list[Any] = []
        while True:
            page = self._request(
                "GET", path, params={**params, "limit": PAGE_LIMIT, "offset": len(items)}
            )
            items.extend(page["items"])
            if not page["items"] or len(items) >= page.get("total", len(items)):
                return items

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(
                f"{method} {path}: the API answered {response.status_code} with non-JSON",
                status=response.status_code,
            ) from exc

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:  # connect refused, DNS, timeouts, resets
            raise ApiUnreachable(
                f"Cannot reach the tapfl API at {self.base_url} ({type(exc).__name__}: {exc})"
            ) from exc
        if response.is_success:
            return response
        detail = _detail_of(response)
        where = f"{method} {API_PREFIX}{path}"
        if response.status_code in (401, 403):
            raise Unauthorized(
                f"{where}: the API refused the token ({response.status_code})"
                + (f": {detail}" if isinstance(detail, str) else ""),
                status=response.status_code,
                detail=detail,
            )
        message = detail if isinstance(detail, str) else response.reason_phrase
        raise ApiError(
            f"{where} failed ({response.status_code}): {message}",
            status=response.status_code,
            detail=detail,
        )


def _metric_params(
    client: int | None,
    task: str | None,
    model: str | None,
    split: str | None,
    metric: str | None,
    stage: str | None,
    round_min: int | None,
    round_max: int | None,
) -> dict[str, Any]:
    return _drop_none(
        {
            "client": client,
            "task": task,
            "model": model,
            "split": split,
            "metric": metric,
            "stage": stage,
            "round_min": round_min,
            "round_max": round_max,
        }
    )


def _detail_of(response: httpx.Response) -> Any:
    """FastAPI's ``detail`` (a string or a list of validation errors), else the raw text."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or None
    if isinstance(body, Mapping) and "detail" in body:
        return body["detail"]
    return body
