import pytest
import torch

from tap_engine.aggregation import weighted_average


def test_each_parameter_is_the_size_weighted_mean_over_its_holders():
    base = {"shared": torch.zeros(3), "head.a": torch.zeros(2), "head.b": torch.full((2,), 7.0)}
    updates = [
        ({"shared": torch.tensor([1.0, 2.0, 3.0]), "head.a": torch.tensor([4.0, 4.0])}, 10),
        ({"shared": torch.tensor([3.0, 6.0, 9.0])}, 30),
    ]
    out = weighted_average(base, updates)
    torch.testing.assert_close(out["shared"], torch.tensor([2.5, 5.0, 7.5]))
    # only the first client holds head.a: its value alone, whatever the other's size
    torch.testing.assert_close(out["head.a"], torch.tensor([4.0, 4.0]))
    # nobody holds head.b: unchanged, bit for bit
    assert torch.equal(out["head.b"], base["head.b"])


def test_aggregation_does_not_modify_its_inputs():
    base = {"w": torch.zeros(2)}
    update = {"w": torch.ones(2)}
    weighted_average(base, [(update, 5)])
    assert torch.equal(base["w"], torch.zeros(2))
    assert torch.equal(update["w"], torch.ones(2))


def test_unknown_parameter_and_empty_client_are_errors():
    with pytest.raises(KeyError):
        weighted_average({"w": torch.zeros(1)}, [({"v": torch.zeros(1)}, 1)])
    with pytest.raises(ValueError):
        weighted_average({"w": torch.zeros(1)}, [({"w": torch.zeros(1)}, 0)])
