"""The hub is probed once: without hub access, every later lookup (a dataset, a backbone,
BERTScore's model) goes to the local cache at once, with no further connection; with a
hub, lookups go to it as usual."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tap_engine.config import BackboneSpec, DatasetSpec
from tap_engine.data import open_split
from tap_engine.errors import DataError
from tap_engine.models.backbones import load_backbone
from tap_engine.text_metrics import TextScorer


@contextmanager
def fake_hub(status: int) -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server answering ``status`` to everything; yields its URL and the
    paths it was asked for, one per connection (no keep-alive)."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            asked.append(self.path)
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(b"{}")

        do_GET = do_HEAD = do_POST = _answer

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


def _point_at(monkeypatch, url: str) -> None:
    """Every hub client at ``url`` (they read ``HF_ENDPOINT`` once, at import)."""
    import datasets.config
    import huggingface_hub.constants as hub_constants

    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setattr(hub_constants, "ENDPOINT", url)
    template = url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", url)
    monkeypatch.setattr(
        datasets.config, "HUB_DATASETS_URL", url + "/datasets/{repo_id}/resolve/{revision}/{path}"
    )


def _hub_lookups(tokenizer) -> None:
    """What a run asks the hub for when its cache lacks them."""
    with pytest.raises(DataError):
        open_split(DatasetSpec(source="hub", name="tapfl-tests/no-such-data"), "train")
    with pytest.raises(ValueError, match=r"backbone\.path"):
        load_backbone(BackboneSpec(name="flava", path="tapfl-tests/no-such-flava"))
    scorer = TextScorer(tokenizer, "tapfl-tests/no-such-bert", None)
    assert "bertscore_f1" in scorer.skipped


@pytest.fixture(scope="module")
def tokenizer():
    return load_backbone(BackboneSpec(name="flava-tiny")).tokenizer


def test_a_hub_that_fails_is_asked_once_then_offline_mode_is_on(fresh_hub, monkeypatch, tokenizer):
    with fake_hub(503) as (url, asked):
        _point_at(monkeypatch, url)
        _hub_lookups(tokenizer)
        assert len(asked) == 1, asked  # the probe; no hub client retried
    assert fresh_hub.offline()
    import huggingface_hub.constants

    assert huggingface_hub.constants.HF_HUB_OFFLINE


def test_a_reachable_hub_is_used_as_usual(fresh_hub, monkeypatch, tokenizer):
    with fake_hub(404) as (url, asked):  # a hub that holds none of these names
        _point_at(monkeypatch, url)
        assert fresh_hub.settle()
        _hub_lookups(tokenizer)
        assert len(asked) > 1 and not fresh_hub.offline()
