"""The HTTP client (``backend.client``) over a mock transport: the requests it sends and the
errors the dashboard's pages rely on."""

from __future__ import annotations

import json

import httpx
import pytest

from backend.client import ApiError, ApiUnreachable, TapflClient, Unauthorized
from backend.processes import free_port


def client_with(handler) -> tuple[TapflClient, list[httpx.Request]]:  # type: ignore[no-untyped-def]
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return TapflClient("http://api.test/", "s3cret", transport=httpx.MockTransport(record)), seen


def test_every_call_carries_the_bearer_token_under_api_v1() -> None:
    client, seen = client_with(lambda r: httpx.Response(200, json={"items": [], "total": 0}))
    client.runs(status="running")
    assert seen[0].url == "http://api.test/api/v1/runs?status=running"
    assert seen[0].headers["Authorization"] == "Bearer s3cret"


def test_unset_metric_filters_are_left_out_of_the_query() -> None:
    client, seen = client_with(lambda r: httpx.Response(200, json={"items": [], "total": 0}))
    client.metrics(7, client=0, metric="accuracy", model=None, round_min=0)  # type: ignore[typeddict-item]
    assert dict(seen[0].url.params) == {
        "client": "0",
        "metric": "accuracy",
        "round_min": "0",
        "limit": "10000",
        "offset": "0",
    }
    client.metrics_csv(7, split="pooled")
    assert seen[1].url.path == "/api/v1/runs/7/metrics.csv"
    assert dict(seen[1].url.params) == {"split": "pooled"}


def test_submit_sends_only_the_fields_given() -> None:
    body = {"id": 1, "name": "x", "preset": "demo", "created_at": "", "runs": []}
    client, seen = client_with(lambda r: httpx.Response(201, json=body))
    client.submit("demo", overrides={"rounds": 3}, sweep={"seed": [1, 2]})
    assert json.loads(seen[0].content) == {
        "preset": "demo",
        "overrides": {"rounds": 3},
        "sweep": {"seed": [1, 2]},
    }


def test_validation_errors_are_keyed_by_the_field_they_are_about() -> None:
    detail = [
        {"loc": ["body", "overrides", "rounds"], "msg": "must be >= 1", "type": "x"},
        {"loc": ["body", "sweep", "seed", 1], "msg": "not an int", "type": "x"},
        {"loc": ["body"], "msg": "bad body", "type": "x"},
    ]
    client, _ = client_with(lambda r: httpx.Response(422, json={"detail": detail}))
    with pytest.raises(ApiError) as caught:
        client.submit("demo")
    assert caught.value.status == 422
    assert caught.value.field_errors() == {
        "overrides.rounds": ["must be >= 1"],
        "sweep.seed": ["not an int"],
        "": ["bad body"],
    }


def test_a_string_detail_becomes_the_message() -> None:
    client, _ = client_with(lambda r: httpx.Response(404, json={"detail": "Run 9 not found"}))
    with pytest.raises(ApiError) as caught:
        client.run(9)
    assert caught.value.status == 404
    assert "Run 9 not found" in str(caught.value)
    assert caught.value.field_errors() == {"": ["Run 9 not found"]}


def test_a_refused_token_raises_unauthorized() -> None:
    client, _ = client_with(lambda r: httpx.Response(401, json={"detail": "Invalid token"}))
    with pytest.raises(Unauthorized) as caught:
        client.presets()
    assert caught.value.status == 401


def test_a_non_json_server_error_still_says_its_status() -> None:
    client, _ = client_with(lambda r: httpx.Response(502, text="<html>Bad Gateway</html>"))
    with pytest.raises(ApiError) as caught:
        client.runs()
    assert caught.value.status == 502


def test_nothing_listening_raises_unreachable_with_the_address() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with TapflClient(url, "t") as client, pytest.raises(ApiUnreachable) as caught:
        client.health()
    assert caught.value.status is None
    assert url in str(caught.value)


def test_base_url_and_token_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAPFL_API_URL", "http://10.1.2.3:9000/")
    monkeypatch.setenv("TAPFL_TOKEN", "from-env")
    client = TapflClient()
    assert client.base_url == "http://10.1.2.3:9000"
    assert client.token == "from-env"
    monkeypatch.delenv("TAPFL_API_URL")
    assert TapflClient().base_url == "http://127.0.0.1:8000"


def test_token_falls_back_to_the_token_file_under_tapfl_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.delenv("TAPFL_TOKEN", raising=False)
    monkeypatch.setenv("TAPFL_HOME", str(tmp_path))
    assert TapflClient().token == ""
    (tmp_path / "token").write_text("from-file\n")
    assert TapflClient().token == "from-file"
    monkeypatch.setenv("TAPFL_TOKEN", "from-env")
    assert TapflClient().token == "from-env"


def test_metrics_reads_page_after_page_until_the_total() -> None:
    rows = [{"round": r, "value": r / 10} for r in range(25)]

    def pages(request: httpx.Request) -> httpx.Response:
        offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
        return httpx.Response(200, json={"items": rows[offset : offset + limit], "total": 25})

    client, seen = client_with(pages)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("backend.client.http.PAGE_LIMIT", 10)
        assert client.metrics(3, metric="mse", client=None) == rows  # type: ignore[typeddict-item]
    assert [r.url.params["offset"] for r in seen] == ["0", "10", "20"]
    assert all(r.url.params["metric"] == "mse" and "client" not in r.url.params for r in seen)


def test_a_degraded_api_answers_503_with_its_health_which_is_returned() -> None:
    body = {"status": "degraded", "database": True, "redis": False}
    client, _ = client_with(lambda r: httpx.Response(503, json=body))
    assert client.health() == body


def test_a_503_without_a_health_body_still_raises() -> None:
    client, _ = client_with(lambda r: httpx.Response(503, text="upstream down"))
    with pytest.raises(ApiError):
        client.health()


def test_compare_sends_the_runs_as_one_comma_separated_parameter() -> None:
    client, seen = client_with(lambda r: httpx.Response(200, json={"groups": []}))
    client.compare(metric="accuracy", runs=[3, 1, 2], model="final")
    assert (
        seen[0].url == "http://api.test/api/v1/compare?metric=accuracy&runs=3%2C1%2C2&model=final"
    )
    client.compare(metric="mse", group="g1", split="pooled")
    assert seen[1].url == "http://api.test/api/v1/compare?metric=mse&group=g1&split=pooled"


def test_replacements_read_every_page() -> None:
    events = [
        {
            "round": r,
            "client": 0,
            "task": "t",
            "global_loss": 1.0,
            "personal_loss": 1.1,
            "margin": 0.01,
            "parameters_copied": 10,
        }
        for r in range(5)
    ]

    def pages(request: httpx.Request) -> httpx.Response:
        offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
        return httpx.Response(200, json={"items": events[offset : offset + limit], "total": 5})

    client, seen = client_with(pages)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("backend.client.http.PAGE_LIMIT", 2)
        assert client.replacements(1, client=0) == events
    assert [r.url.params["offset"] for r in seen] == ["0", "2", "4"]
    assert all(r.url.params["client"] == "0" for r in seen)


def test_the_catalog_is_read_from_catalog() -> None:
    body = {"algorithms": [], "task_families": [], "metrics": [], "presets": []}
    client, seen = client_with(lambda r: httpx.Response(200, json=body))
    assert client.catalog() == body
    assert seen[0].url == "http://api.test/api/v1/catalog"


def test_delete_answers_nothing_and_logs_page_by_seq() -> None:
    lines = [
        {"seq": s, "time": "", "level": "INFO", "source": "api", "message": str(s)}
        for s in (3, 7, 9)
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return httpx.Response(204)
        after = int(request.url.params.get("after", 0))
        rest = [line for line in lines if line["seq"] > after][:2]
        return httpx.Response(200, json={"items": rest, "total": 3})

    client, seen = client_with(answer)
    assert client.delete_experiment(4) is None
    assert [line["seq"] for line in client.all_logs(1)] == [3, 7, 9]
    assert [r.url.params.get("after") for r in seen[1:]] == [None, "7"]


def test_steps_sends_the_filters_and_reads_every_page() -> None:
    rows = [{"step": s, "term": "kd", "value": 0.001} for s in range(1, 16)]

    def pages(request: httpx.Request) -> httpx.Response:
        offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
        return httpx.Response(200, json={"items": rows[offset : offset + limit], "total": 15})

    client, seen = client_with(pages)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("backend.client.http.PAGE_LIMIT", 10)
        assert client.steps(5, client=2, term="kd", task=None) == rows  # type: ignore[typeddict-item]
    assert [r.url.path for r in seen] == ["/api/v1/runs/5/steps"] * 2
    assert [r.url.params["offset"] for r in seen] == ["0", "10"]
    assert all(r.url.params["client"] == "2" and "task" not in r.url.params for r in seen)
