import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from captum_qubo.metrics import DeletionAUC, InsertionAUC, deletion_insertion_curve, gaussian_blur, make_baseline


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def trapezoid(fractions, values):
    return sum((b - a) * (u + v) / 2 for a, b, u, v in zip(fractions, fractions[1:], values, values[1:]))


class SumModel(nn.Module):
    """Logits [Σ pixels, 0]: P(class 0) = sigmoid(sum of the image)."""

    def forward(self, x):
        total = x.flatten(1).sum(dim=1)
        return torch.stack([total, torch.zeros_like(total)], dim=1)


# One 2x2 image [[4, 3], [2, 1]]; saliency ranks pixel 1 and pixel 3 first (tied at 0.9: the lower
# row-major index, 1, goes first), then pixel 2, then pixel 0.
IMAGE = torch.tensor([[[[4.0, 3.0], [2.0, 1.0]]]], dtype=torch.float64)
SALIENCY = torch.tensor([[[0.1, 0.9], [0.5, 0.9]]], dtype=torch.float64)
DELETION_SUMS = [10, 7, 6, 4, 0]  # remove 3, then 1, then 2, then 4
INSERTION_SUMS = [0, 3, 4, 6, 10]


def test_deletion_curve_and_auc_hand_computed():
    fractions, probabilities = deletion_insertion_curve(SumModel(), IMAGE, SALIENCY, 0, "deletion", steps=4)
    assert fractions.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    expected = [sigmoid(s) for s in DELETION_SUMS]
    assert probabilities[0].tolist() == pytest.approx(expected)
    metric = DeletionAUC(steps=4, baseline="zeros")
    metric.update(SumModel(), IMAGE, SALIENCY, 0)
    assert metric.compute().item() == pytest.approx(trapezoid([0, 0.25, 0.5, 0.75, 1], expected))


def test_insertion_curve_and_auc_hand_computed():
    metric = InsertionAUC(steps=4, baseline="zeros")
    metric.update(SumModel(), IMAGE, SALIENCY, 0)
    expected = [sigmoid(s) for s in INSERTION_SUMS]
    assert metric.compute().item() == pytest.approx(trapezoid([0, 0.25, 0.5, 0.75, 1], expected))


def test_fewer_steps_than_pixels_use_exact_fractions_and_too_many_are_capped():
    fractions, probabilities = deletion_insertion_curve(SumModel(), IMAGE, SALIENCY, 0, steps=3)
    # m_i = floor(i * 4 / 3) = 0, 1, 2, 4 pixels deleted
    assert fractions.tolist() == [0.0, 0.25, 0.5, 1.0]
    assert probabilities[0].tolist() == pytest.approx([sigmoid(s) for s in (10, 7, 6, 0)])
    fractions, _ = deletion_insertion_curve(SumModel(), IMAGE, SALIENCY, 0, steps=50)
    assert fractions.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_target_one_and_several_images_in_small_internal_batches():
    images = torch.cat([IMAGE, -IMAGE, 2 * IMAGE])
    saliency = torch.cat([SALIENCY, SALIENCY, SALIENCY.flip(-1)])
    _, batched = deletion_insertion_curve(SumModel(), images, saliency, [0, 1, 0], steps=4, internal_batch_size=3)
    _, whole = deletion_insertion_curve(SumModel(), images, saliency, [0, 1, 0], steps=4, internal_batch_size=100)
    torch.testing.assert_close(batched, whole)
    # image 2 = [[8, 6], [4, 2]] with saliency [[0.9, 0.1], [0.9, 0.5]]: order pixel 0, 2, 3, 1
    assert batched[2].tolist() == pytest.approx([sigmoid(s) for s in (20, 12, 8, 6, 0)])
    # image 1 (negated) scored for class 1: P = 1 - sigmoid(sum) = sigmoid(-sum)
    assert batched[1].tolist() == pytest.approx([sigmoid(s) for s in DELETION_SUMS])


def test_metric_averages_per_image_auc_and_merges():
    images = torch.cat([IMAGE, 0.5 * IMAGE])
    saliency = torch.cat([SALIENCY, SALIENCY])
    expected = [
        trapezoid([0, 0.25, 0.5, 0.75, 1], [sigmoid(scale * s) for s in DELETION_SUMS]) for scale in (1.0, 0.5)
    ]
    whole, first, second = DeletionAUC(steps=4), DeletionAUC(steps=4), DeletionAUC(steps=4)
    whole.update(SumModel(), images, saliency, 0)
    first.update(SumModel(), images[:1], saliency[:1], 0)
    second.update(SumModel(), images[1:], saliency[1:], 0)
    first.merge_state(second)
    assert whole.compute().item() == pytest.approx(sum(expected) / 2)
    assert first.compute().item() == pytest.approx(sum(expected) / 2)


def test_directions_and_defaults():
    assert DeletionAUC.higher_is_better is False and InsertionAUC.higher_is_better is True
    assert DeletionAUC().baseline == "zeros" and InsertionAUC().baseline == "blur"


def test_blur_matches_scipy_gaussian_filter():
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 9, 12, generator=generator, dtype=torch.float64)
    for sigma in (0.7, 2.0, 5.0):
        expected = ndimage.gaussian_filter(images.numpy(), sigma=(0, 0, sigma, sigma), mode="nearest", truncate=3.0)
        np.testing.assert_allclose(gaussian_blur(images, sigma).numpy(), expected, atol=1e-12)


def test_mean_and_tensor_baselines():
    images = torch.arange(16, dtype=torch.float64).view(1, 2, 2, 4)
    mean = make_baseline(images, "mean")
    assert mean[0, 0].unique().tolist() == [3.5] and mean[0, 1].unique().tolist() == [11.5]
    custom = make_baseline(images, torch.tensor([1.0, 2.0]).view(1, 2, 1, 1))
    assert custom[0, 0].unique().tolist() == [1.0] and custom[0, 1].unique().tolist() == [2.0]
    # deleting everything into the mean baseline leaves the image's mean everywhere
    _, probabilities = deletion_insertion_curve(SumModel(), IMAGE, SALIENCY, 0, steps=1, baseline="mean")
    assert probabilities[0, -1].item() == pytest.approx(sigmoid(10.0))


def test_model_mode_and_gradients_untouched():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).double().train()
    deletion_insertion_curve(model, IMAGE, SALIENCY, 2, steps=2)
    assert model.training and all(parameter.grad is None for parameter in model.parameters())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(saliency=torch.ones(1, 1, 1, 1)), "interpolate"),
        (dict(saliency=torch.full((1, 2, 2), float("nan"))), "NaN"),
        (dict(target=2), r"\[0, 2\)"),
        (dict(mode="erase"), "mode"),
        (dict(steps=0), "steps"),
        (dict(baseline="noise"), "baseline"),
        (dict(baseline=torch.ones(3)), "broadcast"),
        (dict(baseline="blur", blur_sigma=0.0), "blur_sigma"),
        (dict(internal_batch_size=0), "internal_batch_size"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, message):
    arguments = dict(model=SumModel(), inputs=IMAGE, saliency=SALIENCY, target=0)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        deletion_insertion_curve(**arguments)


def test_metric_constructor_checks():
    with pytest.raises(ValueError, match="baseline"):
        InsertionAUC(baseline="noise")
    with pytest.raises(ValueError, match="steps"):
        DeletionAUC(steps=0)
