"""The one-read finiteness test against torch.isfinite(...).all()."""
import pytest
import torch

from captum_qubo.tensor_checks import all_finite


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
def test_any_non_finite_value_is_found(bad, dtype):
    tensor = torch.randn(3, 4, 5).to(dtype)
    assert all_finite(tensor)
    for position in [(0, 0, 0), (1, 2, 3), (2, 3, 4)]:
        broken = tensor.clone()
        broken[position] = bad
        assert all_finite(broken) == bool(torch.isfinite(broken).all()) is False


def test_empty_integer_and_extreme_but_finite_tensors_are_finite():
    assert all_finite(torch.empty(0, 3))
    assert all_finite(torch.tensor([1, 2, 3]))
    extremes = torch.tensor([torch.finfo(torch.float32).max, torch.finfo(torch.float32).min, 0.0])
    assert all_finite(extremes) and bool(torch.isfinite(extremes).all())
