import pytest
from pydantic import ValidationError

from tap_engine import catalog
from tap_engine.algorithms import Algorithm, algorithm_class
from tap_engine.config import (
    ConfigError,
    apply_overrides,
    list_presets,
    parse_override,
    resolve_config,
)


def test_demo_preset_is_listed_and_resolves():
    assert "demo" in list_presets()
    config = resolve_config("demo")
    assert config.preset == "demo"
    assert len(config.scenario.clients) >= 6


def test_every_catalogued_algorithm_loads_a_class_of_that_name():
    for name in catalog.algorithm_names():
        cls = algorithm_class(name)
        assert issubclass(cls, Algorithm)
        assert cls.name == name


def test_a_registered_algorithm_is_accepted_by_the_config_and_unknown_ones_are_not():
    with pytest.raises(ValidationError, match="unknown algorithm 'toy'"):
        resolve_config("demo", "toy")
    catalog.register_algorithm(
        catalog.AlgorithmInfo("toy", "a toy", "tap_engine.algorithms.local:Local")
    )
    try:
        assert resolve_config("demo", "toy").algorithm == "toy"
        assert "toy" in [a["name"] for a in catalog.as_dict()["algorithms"]]
    finally:
        catalog.unregister_algorithm("toy")
    assert "toy" not in catalog.algorithm_names()


def test_overrides_set_top_level_nested_and_list_fields():
    config = resolve_config(
        "demo",
        "local",
        {
            "rounds": 3,
            "backbone.tiny_hidden_size": 32,
            "scenario.clients.0.tasks.0.labels": [0, 1],
            "scenario": {"datasets": {"digits": {"test_fraction": 0.3}}},
        },
    )
    assert config.algorithm == "local"
    assert config.rounds == 3
    assert config.backbone.tiny_hidden_size == 32
    assert config.scenario.clients[0].tasks[0].parts[0].labels == [0, 1]
    # a nested override merges: the dataset keeps its other fields
    assert config.scenario.datasets["digits"].test_fraction == 0.3
    assert config.scenario.datasets["digits"].name == "sklearn_digits"


def test_parse_override_reads_yaml_values():
    assert parse_override("rounds=3") == ("rounds", 3)
    assert parse_override("peak_lr=1e-3") == ("peak_lr", 1e-3)
    assert parse_override("x.labels=[1, 2]") == ("x.labels", [1, 2])
    with pytest.raises(ConfigError):
        parse_override("rounds")


def _locs(exc: ValidationError) -> list[tuple]:
    return [tuple(e["loc"]) for e in exc.errors()]


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"rounds": 0}, ("rounds",)),
        ({"rounds": "many"}, ("rounds",)),
        ({"roundz": 3}, ("roundz",)),
        ({"backbone.size": 3}, ("backbone", "size")),
        (
            {"scenario.clients.0.tasks.0.shards": [[3, 2]]},
            ("scenario", "clients", 0, "tasks", 0, "shards"),
        ),
    ],
)
def test_invalid_overrides_name_the_field(overrides, loc):
    with pytest.raises(ValidationError) as info:
        resolve_config("demo", None, overrides)
    assert loc in _locs(info.value)


def test_unknown_algorithm_names_the_field():
    with pytest.raises(ValidationError) as info:
        resolve_config("demo", "fedprox")
    assert ("algorithm",) in _locs(info.value)
    assert "fedprox" in str(info.value)


def test_clients_per_round_above_client_count_is_rejected():
    with pytest.raises(ValidationError, match="clients_per_round"):
        resolve_config("demo", None, {"clients_per_round": 99})


def test_unknown_preset_and_bad_list_index_raise_config_error():
    with pytest.raises(ConfigError) as info:
        resolve_config("no-such-preset")
    assert info.value.loc == ("preset",)
    with pytest.raises(ConfigError) as info:
        apply_overrides({"a": [1]}, {"a.5": 2})
    assert info.value.loc == ("a", "5")


def test_a_user_scenario_file_can_be_used_as_preset(tmp_path):
    import yaml

    from tap_engine.config import load_preset

    data = load_preset("demo")
    data["name"] = "mine"
    data["scenario"]["clients"] = data["scenario"]["clients"][:2]
    data["clients_per_round"] = 2
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(data))
    config = resolve_config(str(path))
    assert config.name == "mine"
    assert len(config.scenario.clients) == 2


def test_a_task_the_backbone_cannot_serve_is_rejected_naming_it():
    with pytest.raises(ValidationError, match=r"vilt backbone cannot serve image_classification"):
        resolve_config("demo", None, {"backbone.name": "vilt-tiny"})


@pytest.mark.parametrize("value", [-0.01, float("inf"), float("nan")])
def test_a_margin_must_be_finite_and_not_negative(value):
    with pytest.raises(ValidationError) as caught:
        resolve_config("demo", overrides={"margins.image_classification": value})
    [error] = caught.value.errors()
    assert error["loc"] == ("margins", "image_classification")


def test_a_zero_margin_is_accepted():
    config = resolve_config("demo", overrides={"margins.image_classification": 0})
    assert config.margins["image_classification"] == 0


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("rounds", 10**30),
        ("seed", 2**63),
        ("peak_lr", float("nan")),
        ("kd_lambda", float("inf")),
        ("grad_clip", float("-inf")),
        ("batch_size", 10**9),
        ("backbone.tiny_hidden_size", 10**6),
        ("scenario.max_train", 10**12),
    ],
)
def test_a_setting_past_its_bound_is_refused_at_its_path(key, value):
    with pytest.raises(ValidationError) as caught:
        resolve_config("demo", overrides={key: value})
    assert [e["loc"] for e in caught.value.errors()] == [tuple(key.split("."))]


@pytest.mark.parametrize("name", ["cais/mmlu", "uoft-cs/cifar100", "mnist", "a.b/c_d-1"])
def test_a_hub_id_is_accepted_as_a_hub_dataset_name(name):
    overrides = {"scenario.datasets.digits.source": "hub", "scenario.datasets.digits.name": name}
    assert resolve_config("demo", overrides=overrides).scenario.datasets["digits"].name == name


@pytest.mark.parametrize("name", ["/var/tapfl", "./cache", "../x", "a/../b", "a/b/c", "~/d", ""])
def test_a_path_is_not_a_hub_dataset_name(name):
    overrides = {"scenario.datasets.digits.source": "hub", "scenario.datasets.digits.name": name}
    with pytest.raises(ValidationError, match="not a hub dataset id") as caught:
        resolve_config("demo", overrides=overrides)
    assert caught.value.errors()[0]["loc"] == ("scenario", "datasets", "digits", "name")


def test_a_builtin_dataset_takes_no_path():
    with pytest.raises(ValidationError, match="builtin dataset") as caught:
        resolve_config("demo", overrides={"scenario.datasets.digits.path": "/data/digits"})
    assert caught.value.errors()[0]["loc"] == ("scenario", "datasets", "digits", "path")
