import pytest
import torch

from tap_engine.config import BackboneSpec, resolve_config
from tap_engine.data import IMAGE_MEAN, IMAGE_STD, DataError, build_clients, pooled_test


@pytest.fixture(scope="module")
def tokenizer():
    from tap_engine.models.backbones import load_backbone

    return load_backbone(BackboneSpec(name="flava-tiny")).tokenizer


def test_no_test_item_appears_in_any_clients_training_data(tokenizer):
    config = resolve_config("demo")
    clients = build_clients(config, tokenizer)
    for dataset in config.scenario.datasets:
        tasks = [t for c in clients for t in c.tasks if t.spec.parts[0].dataset == dataset]
        train_ids = torch.cat([t.train.ids for t in tasks])
        test_ids = torch.cat([t.test.ids for t in tasks])
        assert not torch.isin(test_ids, train_ids).any(), dataset


def test_clients_hold_disjoint_shards_and_their_label_filters(tokenizer):
    config = resolve_config("demo")
    clients = build_clients(config, tokenizer)
    first = clients[0].tasks[0]
    assert set(first.train.labels.tolist()) <= set(
        config.scenario.clients[0].tasks[0].parts[0].labels
    )
    ids = [set(c.tasks[0].train.ids.tolist()) for c in clients[:3]]  # the digits clients
    assert all(not (a & b) for i, a in enumerate(ids) for b in ids[i + 1 :])


def test_images_are_64x64_rgb_uint8_and_normalise_from_the_full_range(tokenizer):
    clients = build_clients(resolve_config("demo"), tokenizer)
    images = clients[0].tasks[0].train.images
    assert images.shape[1:] == (3, 64, 64) and images.dtype == torch.uint8
    assert images.max() > 240  # digits' ink reaches full intensity: no wrap-around
    batch = clients[0].tasks[0].train.batch(torch.arange(4), torch.device("cpu"))
    pixels = batch.images * IMAGE_STD + IMAGE_MEAN  # undo normalisation
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5


def test_pooled_test_data_is_the_union_of_the_clients_test_data(tokenizer):
    clients = build_clients(resolve_config("demo"), tokenizer)
    pooled = pooled_test(clients)
    holders = [t for c in clients for t in c.tasks if t.name == "digits_image_classification"]
    assert len(pooled["digits_image_classification"]) == sum(len(t.test) for t in holders)


def test_missing_disk_dataset_fails_naming_client_and_dataset(tokenizer):
    config = resolve_config(
        "demo",
        None,
        {
            "scenario.datasets.digits.source": "disk",
            "scenario.datasets.digits.name": "/nonexistent",
        },
    )
    with pytest.raises(DataError, match=r"client 0.*dataset 'digits'"):
        build_clients(config, tokenizer)


def test_unknown_hub_dataset_fails_naming_client_and_dataset(tokenizer, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # resolving a hub id must not hang offline
    config = resolve_config(
        "demo",
        None,
        {"scenario.datasets.digits": {"source": "hub", "name": "no-such-org/no-such-dataset"}},
    )
    with pytest.raises(DataError, match=r"client 0.*dataset 'digits'.*no-such-dataset"):
        build_clients(config, tokenizer)


def test_unknown_builtin_dataset_is_rejected_naming_it(tokenizer):
    config = resolve_config("demo", None, {"scenario.datasets.digits.name": "mnist_please"})
    with pytest.raises(DataError, match=r"client 0.*unknown builtin dataset 'mnist_please'"):
        build_clients(config, tokenizer)


def test_missing_column_fails_naming_client_dataset_and_column(tokenizer):
    config = resolve_config("demo", None, {"scenario.datasets.shapes.text_column": "questoin"})
    with pytest.raises(DataError, match=r"client 3.*dataset 'shapes'.*no column 'questoin'"):
        build_clients(config, tokenizer)


def test_label_out_of_range_fails_naming_client_and_dataset(tokenizer):
    config = resolve_config("demo", None, {"scenario.datasets.digits.num_classes": 5})
    with pytest.raises(
        DataError, match=r"client \d.*dataset 'digits'.*labels span.*outside \[0, 4\]"
    ):
        build_clients(config, tokenizer)


def test_empty_client_split_is_rejected(tokenizer):
    config = resolve_config("demo", None, {"scenario.clients.0.tasks.0.labels": [42]})
    with pytest.raises(DataError, match=r"client 0.*empty"):
        build_clients(config, tokenizer)


def test_dataset_saved_to_disk_loads_through_the_datasets_code_path(tmp_path, tokenizer):
    datasets = pytest.importorskip("datasets")
    import numpy as np

    rng = np.random.default_rng(0)
    rows = {
        "img": [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(40)],
        "fine_label": [i % 4 for i in range(40)],
    }
    features = datasets.Features({"img": datasets.Image(), "fine_label": datasets.Value("int64")})
    ds = datasets.Dataset.from_dict(
        {
            "img": [datasets.Image().encode_example(a) for a in rows["img"]],
            "fine_label": rows["fine_label"],
        },
        features=features,
    )
    datasets.DatasetDict({"train": ds, "test": ds.select(range(8))}).save_to_disk(tmp_path / "toy")
    config = resolve_config(
        "demo",
        None,
        {
            "scenario.datasets.digits": {
                "source": "disk",
                "name": str(tmp_path / "toy"),
                "test_split": "test",
                "image_column": "img",
                "label_column": "fine_label",
                "num_classes": 4,
            },
            "scenario.clients": [
                {"tasks": [{"task": "toy", "family": "image_classification", "dataset": "digits"}]}
            ],
            "clients_per_round": 1,
        },
    )
    (client,) = build_clients(config, tokenizer)
    assert len(client.tasks[0].train) == 40 and len(client.tasks[0].test) == 8
    # uint8 source pixels survive the resize to 64x64 within 0..255, without wrapping
    assert client.tasks[0].train.images.dtype == torch.uint8
    assert int(client.tasks[0].train.images.max()) > 200


def test_a_second_build_of_the_same_scenario_does_no_preprocessing(
    tokenizer, tmp_path, monkeypatch
):
    import tap_engine.data as data

    config = resolve_config("demo")
    first = build_clients(config, tokenizer, tmp_path)

    def no_preprocessing(*args, **kwargs):
        raise AssertionError("preprocessed again")

    monkeypatch.setattr(data, "_encode", no_preprocessing)
    second = build_clients(config, tokenizer, tmp_path)
    for a, b in zip(first, second, strict=True):
        for ta, tb in zip(a.tasks, b.tasks, strict=True):
            assert torch.equal(ta.train.ids, tb.train.ids)
            if ta.train.images is not None:
                assert torch.equal(ta.train.images, tb.train.images)
    assert list((tmp_path / "data").glob("*.pt"))
