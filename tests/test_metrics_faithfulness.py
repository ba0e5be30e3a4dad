import math

import pytest
import torch
from torch import nn

from captum_qubo.metrics import AverageDrop, IncreaseInConfidence, masked_confidences, masked_confidences_of_methods


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def two_pixel_model():
    """Logits [x0 + x1, 0]: the probability of class 0 is sigmoid(x0 + x1)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False)).double()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    return model


def test_average_drop_and_increase_in_confidence_hand_computed():
    base = torch.tensor([0.8, 0.5, 0.4, 0.9])
    masked = torch.tensor([0.4, 0.6, 0.4, 0.0])
    # drops: (0.8-0.4)/0.8 = 0.5, 0 (rise), 0 (equal), (0.9-0)/0.9 = 1 -> mean 1.5/4
    drop, increase = AverageDrop(), IncreaseInConfidence()
    drop.update(base, masked)
    increase.update(base, masked)
    assert drop.compute().item() == pytest.approx(100 * 1.5 / 4)
    assert increase.compute().item() == pytest.approx(100 * 1 / 4)  # only 0.6 > 0.5; ties do not count


def test_directions_declared():
    assert AverageDrop.higher_is_better is False
    assert IncreaseInConfidence.higher_is_better is True


def test_split_updates_merge_to_one_metric():
    generator = torch.Generator().manual_seed(0)
    base = torch.rand(40, generator=generator) * 0.9 + 0.1
    masked = torch.rand(40, generator=generator)
    for metric_class in (AverageDrop, IncreaseInConfidence):
        whole, first, second = metric_class(), metric_class(), metric_class()
        whole.update(base, masked)
        first.update(base[:13], masked[:13])
        second.update(base[13:], masked[13:])
        first.merge_state(second)
        assert first.compute().item() == pytest.approx(whole.compute().item(), abs=1e-5)


def test_masked_confidences_on_a_hand_computable_model():
    model = two_pixel_model()
    model.train()
    inputs = torch.tensor([[[[2.0, 1.0]]], [[[-1.0, 3.0]]]], dtype=torch.float64)
    saliency = torch.tensor([[[1.0, 0.0]], [[0.5, 0.25]]], dtype=torch.float64)
    base, masked = masked_confidences(model, inputs, saliency, target=0, internal_batch_size=1)
    assert base.tolist() == pytest.approx([sigmoid(3.0), sigmoid(2.0)])
    assert masked.tolist() == pytest.approx([sigmoid(2.0), sigmoid(-0.5 + 0.75)])
    # class 1 has logit 0, so its probability is 1 - sigmoid(x0 + x1)
    base1, _ = masked_confidences(model, inputs, saliency, target=[1, 0])
    assert base1.tolist() == pytest.approx([1 - sigmoid(3.0), sigmoid(2.0)])
    assert model.training
    assert all(parameter.grad is None for parameter in model.parameters())


def test_several_methods_maps_are_scored_against_one_base_pass():
    model = two_pixel_model()
    inputs = torch.tensor([[[[2.0, 1.0]]], [[[-1.0, 3.0]]]], dtype=torch.float64)
    first = torch.tensor([[[1.0, 0.0]], [[0.5, 0.25]]], dtype=torch.float64)
    second = torch.tensor([[[0.0, 1.0]], [[1.0, 1.0]]], dtype=torch.float64)
    base, (masked_first, masked_second) = masked_confidences_of_methods(model, inputs, [first, second], target=0,
                                                                        internal_batch_size=3)
    assert base.tolist() == pytest.approx([sigmoid(3.0), sigmoid(2.0)])
    assert masked_first.tolist() == pytest.approx([sigmoid(2.0), sigmoid(-0.5 + 0.75)])
    assert masked_second.tolist() == pytest.approx([sigmoid(1.0), sigmoid(2.0)])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        masked_confidences_of_methods(model, inputs, [first, second + 1.0], target=0)


def test_known_base_scores_skip_the_unmasked_pass_and_no_graph_is_built():
    model = two_pixel_model()
    seen = []
    counting = lambda images: seen.append(len(images)) or model(images)  # noqa: E731
    inputs = torch.tensor([[[[2.0, 1.0]]], [[[-1.0, 3.0]]]], dtype=torch.float64)
    first = torch.tensor([[[1.0, 0.0]], [[0.5, 0.25]]], dtype=torch.float64)
    second = torch.tensor([[[0.0, 1.0]], [[1.0, 1.0]]], dtype=torch.float64)
    known = torch.tensor([0.25, 0.5], dtype=torch.float64)  # whatever the caller measured: passed through as given
    base, (masked_first, masked_second) = masked_confidences_of_methods(
        counting, inputs, [first, second], target=0, internal_batch_size=4, base_scores=known)
    assert seen == [4]  # the two methods' masked images, in one call; the unmasked ones are not scored
    assert base is known
    assert masked_first.tolist() == pytest.approx([sigmoid(2.0), sigmoid(-0.5 + 0.75)])
    assert masked_second.tolist() == pytest.approx([sigmoid(1.0), sigmoid(2.0)])
    with torch.enable_grad():
        _, (masked,) = masked_confidences_of_methods(model, inputs.requires_grad_(), [first], target=0)
    assert not masked.requires_grad  # scored under no_grad: no autograd graph kept
    with pytest.raises(ValueError, match="base_scores must be"):
        masked_confidences_of_methods(model, inputs, [first], target=0, base_scores=known[:1])


@pytest.mark.parametrize(
    "saliency, target, message",
    [
        (torch.full((1, 1, 1, 2), 1.5), 0, r"\[0, 1\]"),
        (torch.full((1, 1, 1, 2), -0.1), 0, r"\[0, 1\]"),
        (torch.ones(1, 1, 2, 2), 0, "interpolate"),
        (torch.ones(1, 1, 1, 2), 2, r"\[0, 2\)"),
        (torch.ones(1, 1, 1, 2), [0, 1], "target must"),
        (torch.ones(1, 1, 1, 2), None, "target is required"),
    ],
)
def test_masked_confidences_rejects_bad_inputs(saliency, target, message):
    with pytest.raises(ValueError, match=message):
        masked_confidences(two_pixel_model(), torch.ones(1, 1, 1, 2, dtype=torch.float64), saliency, target)


def test_masked_confidences_rejects_empty_inputs():
    with pytest.raises(ValueError, match="no images"):
        masked_confidences(two_pixel_model(), torch.ones(0, 1, 1, 2), torch.ones(0, 1, 1, 2), [])


@pytest.mark.parametrize(
    "base, masked, message",
    [
        (torch.tensor([0.5, 0.5]), torch.tensor([0.5]), "same length"),
        (torch.tensor([[0.5]]), torch.tensor([[0.5]]), "1-D"),
        (torch.tensor([1.5]), torch.tensor([0.5]), "softmax probabilities"),
        (torch.tensor([0.5]), torch.tensor([float("nan")]), "softmax probabilities"),
        (torch.tensor([0.0]), torch.tensor([0.5]), "> 0"),
    ],
)
def test_scores_are_validated(base, masked, message):
    for metric in (AverageDrop(), IncreaseInConfidence()):
        with pytest.raises(ValueError, match=message):
            metric.update(base, masked)
