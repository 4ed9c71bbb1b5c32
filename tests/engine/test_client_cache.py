"""The whole scenario's pools cache: a warm build opens no dataset and encodes nothing; a
change to the scenario, the tokenizer or a source's files misses it."""

import pytest
import torch

import tap_engine.data as data
from tap_engine.config import BackboneSpec, resolve_config


@pytest.fixture(scope="module")
def tokenizer():
    from tap_engine.models.backbones import load_backbone

    return load_backbone(BackboneSpec(name="flava-tiny")).tokenizer


@pytest.fixture
def opened(monkeypatch):
    """Counts the datasets opened and the splits encoded."""
    calls = {"open": 0, "encode": 0}
    open_dataset, encode = data.open_dataset, data._encode

    def counted_open(*args, **kwargs):
        calls["open"] += 1
        return open_dataset(*args, **kwargs)

    def counted_encode(*args, **kwargs):
        calls["encode"] += 1
        return encode(*args, **kwargs)

    monkeypatch.setattr(data, "open_dataset", counted_open)
    monkeypatch.setattr(data, "_encode", counted_encode)
    return calls


def _same(first, second) -> None:
    for a, b in zip(first, second, strict=True):
        for ta, tb in zip(a.tasks, b.tasks, strict=True):
            assert ta.spec == tb.spec and ta.num_classes == tb.num_classes
            for split in ("train", "test"):
                pa, pb = getattr(ta, split), getattr(tb, split)
                for name in ("ids", "domains", "images", "input_ids", "target_ids", "labels"):
                    va, vb = getattr(pa, name), getattr(pb, name)
                    assert (va is None) == (vb is None), name
                    if va is not None:
                        assert va.dtype == vb.dtype and torch.equal(va, vb), name


def test_a_warm_build_opens_no_dataset_and_encodes_nothing(tokenizer, tmp_path, opened):
    config = resolve_config("demo")
    first = data.build_clients(config, tokenizer, tmp_path)
    assert opened["open"] > 0 and opened["encode"] > 0
    opened.update(open=0, encode=0)
    second = data.build_clients(config, tokenizer, tmp_path)
    assert opened == {"open": 0, "encode": 0}
    _same(first, second)
    assert len(list((tmp_path / "data").glob("clients-*.pt"))) == 1


def test_a_changed_setting_misses_the_cache(tokenizer, tmp_path, opened):
    data.build_clients(resolve_config("demo"), tokenizer, tmp_path)
    opened.update(open=0, encode=0)
    changed = resolve_config("demo", None, {"scenario.max_train": 5})
    clients = data.build_clients(changed, tokenizer, tmp_path)
    assert opened["open"] > 0
    assert all(len(t.train) <= 5 for c in clients for t in c.tasks)
    opened.update(open=0, encode=0)
    shorter = resolve_config("demo", None, {"backbone.max_text_length": 7})
    data.build_clients(shorter, tokenizer, tmp_path)
    assert opened["open"] > 0 and opened["encode"] > 0  # new limits: encoded again
    assert len(list((tmp_path / "data").glob("clients-*.pt"))) == 3


def test_a_changed_source_misses_the_cache(tokenizer, tmp_path, opened):
    datasets = pytest.importorskip("datasets")

    def save(offset: int) -> None:
        rows = {
            "text": [f"row {i + offset}" for i in range(20)],
            "label": [i % 2 for i in range(20)],
        }
        datasets.Dataset.from_dict(rows).save_to_disk(tmp_path / "toy")

    config = resolve_config(
        "demo",
        None,
        {
            "scenario.datasets.toy": {
                "source": "disk",
                "name": str(tmp_path / "toy"),
                "image_column": None,
                "text_column": "text",
                "label_column": "label",
                "num_classes": 2,
            },
            "scenario.clients": [
                {
                    "tasks": [
                        {
                            "task": "toy",
                            "family": "text_classification",
                            "modalities": ["text"],
                            "dataset": "toy",
                        }
                    ]
                }
            ],
            "clients_per_round": 1,
        },
    )
    save(0)
    first = data.build_clients(config, tokenizer, tmp_path / "cache")
    save(1000)  # same shapes, other rows: only the files tell
    opened.update(open=0, encode=0)
    second = data.build_clients(config, tokenizer, tmp_path / "cache")
    assert opened["open"] == 1
    assert not torch.equal(first[0].tasks[0].train.input_ids, second[0].tasks[0].train.input_ids)
