import pytest
import torch
from torch import nn

from captum_qubo.metrics import GridPointingGame, build_grid_composites, cell_attribution_shares

# 4x4 attribution on a 2x2 grid. Top-left cell pixels [2, -1, 1, 0] -> positive mass 3 (negative
# pixels are dropped one by one, not netted); top-right 1; bottom-left all negative; bottom-right 0.
ATTRIBUTION = torch.tensor(
    [
        [2.0, -1.0, 0.5, 0.0],
        [1.0, 0.0, 0.0, 0.5],
        [-2.0, -1.0, 0.0, 0.0],
        [-1.0, -1.0, 0.0, 0.0],
    ]
)


def test_cell_shares_hand_computed():
    shares = cell_attribution_shares(ATTRIBUTION[None], (2, 2))
    assert shares[0].tolist() == pytest.approx([0.75, 0.25, 0.0, 0.0])
    # a 1x2 grid splits left/right: left positive mass 2 + 1 = 3, right 0.5 + 0.5 = 1
    assert cell_attribution_shares(ATTRIBUTION[None, None], (1, 2))[0].tolist() == pytest.approx([0.75, 0.25])


def test_metric_averages_target_cell_shares():
    attributions = torch.stack([ATTRIBUTION, ATTRIBUTION, torch.ones(4, 4), -torch.ones(4, 4)])[:, None]
    metric = GridPointingGame()
    metric.update(attributions, torch.tensor([0, 1, 3, 2]))
    # 0.75, 0.25, uniform map 1/4, no positive attribution at all -> 0
    assert metric.compute().item() == pytest.approx((0.75 + 0.25 + 0.25 + 0.0) / 4)


def test_split_updates_merge_to_one_metric():
    generator = torch.Generator().manual_seed(0)
    attributions = torch.randn(10, 6, 6, generator=generator)
    cells = torch.randint(0, 4, (10,), generator=generator)
    whole, first, second = GridPointingGame(), GridPointingGame(), GridPointingGame()
    whole.update(attributions, cells)
    first.update(attributions[:4], cells[:4])
    second.update(attributions[4:], cells[4:])
    first.merge_state(second)
    assert first.compute().item() == pytest.approx(whole.compute().item(), abs=1e-12)
    assert GridPointingGame.higher_is_better is True


@pytest.mark.parametrize(
    "attributions, cells, message",
    [
        (torch.ones(1, 5, 4), torch.tensor([0]), "upsample"),
        (torch.ones(1, 3, 4, 4), torch.tensor([0]), "sum multi-channel"),
        (torch.ones(1, 4, 4), torch.tensor([4]), r"\[0, 4\)"),
        (torch.ones(1, 4, 4), torch.tensor([-1]), r"\[0, 4\)"),
        (torch.ones(2, 4, 4), torch.tensor([0]), r"target_cells must be \(2,\)"),
        (torch.ones(1, 4, 4), torch.tensor([0.0]), "integer"),
        (torch.full((1, 4, 4), float("nan")), torch.tensor([0]), "NaN"),
    ],
)
def test_bad_inputs_raise_clear_errors(attributions, cells, message):
    with pytest.raises(ValueError, match=message):
        GridPointingGame().update(attributions, cells)


class BrightestChannel(nn.Module):
    """Predicts the channel with the largest mean (logit = 10 · channel mean)."""

    def forward(self, x):
        return 10.0 * x.mean(dim=(2, 3))


def channel_images():
    """Images 0..9: one lit channel (class = i % 5, confident); 10, 11: two half-lit channels
    (confidence below 0.5, must never be used)."""
    images = torch.zeros(12, 5, 3, 2)
    images[torch.arange(10), torch.arange(10) % 5] = 1.0
    images[torch.arange(10), torch.arange(10) % 5, 0, 0] += torch.arange(10) * 1e-3  # tells tiles apart
    images[10, 0:2] = 0.5
    images[11, 3:5] = 0.5
    return images


def test_composites_tile_confident_images_of_distinct_classes():
    images = channel_images()
    composites = build_grid_composites(BrightestChannel(), images, num_composites=6, seed=3)
    assert composites.images.shape == (6, 5, 6, 4)
    assert (composites.source_indices < 10).all()
    assert torch.equal(composites.cell_classes, composites.source_indices % 5)
    for row in composites.cell_classes:
        assert len(set(row.tolist())) == 4
    for cell in range(4):
        r, c = divmod(cell, 2)
        tiles = composites.images[:, :, 3 * r : 3 * r + 3, 2 * c : 2 * c + 2]
        assert torch.equal(tiles, images[composites.source_indices[:, cell]])
    again = build_grid_composites(BrightestChannel(), images, num_composites=6, seed=3)
    assert torch.equal(again.source_indices, composites.source_indices)


def test_expand_per_cell_pairs_each_cell_with_its_class():
    composites = build_grid_composites(BrightestChannel(), channel_images(), num_composites=2, grid=(1, 3))
    inputs, targets, cells = composites.expand_per_cell()
    assert inputs.shape == (6, 5, 3, 6)
    assert torch.equal(inputs[3], composites.images[1])
    assert cells.tolist() == [0, 1, 2, 0, 1, 2]
    assert torch.equal(targets, composites.cell_classes.flatten())
    # the analytic model, explained perfectly (attribution = its class channel), scores 1
    attributions = inputs[torch.arange(6), targets]
    metric = GridPointingGame(grid=(1, 3))
    metric.update(attributions, cells)
    assert metric.compute().item() == pytest.approx(1.0)


def test_too_few_confident_classes_is_a_clear_error():
    with pytest.raises(ValueError, match="lower min_confidence"):
        build_grid_composites(BrightestChannel(), channel_images()[:3], num_composites=1)
    with pytest.raises(ValueError, match="lower min_confidence"):
        build_grid_composites(BrightestChannel(), channel_images(), num_composites=1, min_confidence=0.9999)
