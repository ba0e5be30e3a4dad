import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from captum_qubo.metrics import ClassDisentanglement, channel_sets_to_mask, top_k_mask  # noqa: E402

# Four classes over three maps; class 2 never selects anything.
#   class 0: {0, 1}, {0}        -> counts [2, 1, 0] -> p0 = [2/3, 1/3, 0]
#   class 1: {1, 2}, {2}, {2}   -> counts [0, 1, 3] -> p1 = [0, 1/4, 3/4]
#   class 3: {0, 2}             -> counts [1, 0, 1] -> p3 = [1/2, 0, 1/2]
SELECTIONS = [[0, 1], [1, 2], [0], [2], [0, 2], [2]]
CLASSES = [0, 1, 0, 1, 3, 1]
BC_01 = math.sqrt(1 / 3 * 1 / 4)
BC_03 = math.sqrt(2 / 3 * 1 / 2)
BC_13 = math.sqrt(3 / 4 * 1 / 2)


def hand_metric():
    metric = ClassDisentanglement(num_classes=4, num_channels=3)
    metric.update(channel_sets_to_mask(SELECTIONS, 3), torch.tensor(CLASSES))
    return metric


def test_matrix_matches_hand_computed_bhattacharyya():
    result = hand_metric().compute()
    matrix = result["matrix"]
    expected_pairs = {(0, 1): BC_01, (0, 3): BC_03, (1, 3): BC_13}
    for (a, b), value in expected_pairs.items():
        assert matrix[a, b].item() == pytest.approx(value, abs=1e-12)
        assert matrix[b, a].item() == pytest.approx(value, abs=1e-12)
    for c in (0, 1, 3):
        assert matrix[c, c].item() == pytest.approx(1.0, abs=1e-12)
    assert torch.isnan(matrix[2]).all() and torch.isnan(matrix[:, 2]).all()
    assert result["mean_off_diagonal"].item() == pytest.approx((BC_01 + BC_03 + BC_13) / 3, abs=1e-12)
    assert result["max_off_diagonal"].item() == pytest.approx(BC_13, abs=1e-12)


def test_random_counts_give_symmetric_matrix_with_unit_diagonal_and_disjoint_zero():
    generator = torch.Generator().manual_seed(0)
    metric = ClassDisentanglement(num_classes=5, num_channels=8)
    selected = torch.rand(200, 8, generator=generator) < 0.3
    classes = torch.randint(0, 5, (200,), generator=generator)
    selected[:, :4] &= (classes < 3)[:, None]  # classes 3, 4 use only maps 4..7
    selected[:, 4:] &= (classes >= 3)[:, None]  # classes 0..2 use only maps 0..3
    metric.update(selected, classes)
    matrix = metric.compute()["matrix"]
    torch.testing.assert_close(matrix, matrix.T)
    torch.testing.assert_close(matrix.diagonal(), torch.ones(5, dtype=torch.float64))
    assert (matrix[:3, 3:] == 0).all()
    assert ((matrix >= 0) & (matrix <= 1)).all()


def test_fewer_than_two_classes_with_selections_gives_nan_summaries():
    metric = ClassDisentanglement(num_classes=3, num_channels=2)
    metric.update(torch.tensor([[True, False], [False, False]]), torch.tensor([0, 1]))
    result = metric.compute()
    assert result["matrix"][0, 0] == 1.0
    assert torch.isnan(result["mean_off_diagonal"]) and torch.isnan(result["max_off_diagonal"])


def test_split_updates_merge_to_the_same_state_as_one_metric():
    generator = torch.Generator().manual_seed(1)
    selected = torch.rand(60, 6, generator=generator) < 0.4
    classes = torch.randint(0, 4, (60,), generator=generator)
    whole = ClassDisentanglement(4, 6)
    whole.update(selected, classes)
    first, second = ClassDisentanglement(4, 6), ClassDisentanglement(4, 6)
    first.update(selected[:25], classes[:25])
    second.update(selected[25:], classes[25:])
    # DDP reduction of a "sum" state: element-wise sum over processes.
    assert torch.equal(first.selection_counts + second.selection_counts, whole.selection_counts)
    first.merge_state(second)
    torch.testing.assert_close(first.compute()["matrix"], whole.compute()["matrix"], equal_nan=True)


def test_top_k_mask_breaks_ties_by_lower_index_and_allows_per_sample_k():
    weights = torch.tensor([[1.0, 2.0, 2.0, 0.0], [-1.0, -3.0, 5.0, 5.0]])
    assert top_k_mask(weights, 1).tolist() == [[False, True, False, False], [False, False, True, False]]
    assert top_k_mask(weights, torch.tensor([3, 0])).tolist() == [[True, True, True, False], [False] * 4]
    assert top_k_mask(weights, [0, 3]).tolist() == [[False] * 4, [True, False, True, True]]


@pytest.mark.parametrize("k", [5, -1, 1.5, [1, 2, 3]])
def test_top_k_mask_rejects_bad_k(k):
    with pytest.raises(ValueError, match="k"):
        top_k_mask(torch.zeros(2, 4), k)


def test_channel_sets_to_mask():
    mask = channel_sets_to_mask([[0, 2], [], [1]], 3)
    assert mask.tolist() == [[True, False, True], [False, False, False], [False, True, False]]
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        channel_sets_to_mask([[3]], 3)


@pytest.mark.parametrize(
    "selected, classes, message",
    [
        (torch.ones(2, 3, dtype=torch.long), torch.tensor([0, 1]), "bool mask"),
        (torch.ones(2, 4, dtype=torch.bool), torch.tensor([0, 1]), r"\(N, 3\)"),
        (torch.ones(2, 3, dtype=torch.bool), torch.tensor([0]), "classes must be"),
        (torch.ones(2, 3, dtype=torch.bool), torch.tensor([0.0, 1.0]), "classes must be"),
        (torch.ones(2, 3, dtype=torch.bool), torch.tensor([0, 4]), r"\[0, 4\)"),
        (torch.ones(2, 3, dtype=torch.bool), torch.tensor([-1, 0]), r"\[0, 4\)"),
    ],
)
def test_bad_inputs_raise_clear_errors(selected, classes, message):
    with pytest.raises(ValueError, match=message):
        ClassDisentanglement(4, 3).update(selected, classes)


def test_constructor_checks():
    with pytest.raises(ValueError, match="class_names"):
        ClassDisentanglement(3, 2, class_names=["a", "b"])
    with pytest.raises(ValueError, match=">= 1"):
        ClassDisentanglement(0, 2)


def test_plot_annotates_every_cell_and_marks_missing_classes():
    metric = hand_metric()
    fig, ax = metric.plot(class_names=["cat", "dog", "fox", "owl"])
    texts = [text.get_text() for text in ax.texts]
    assert len(texts) == 16
    assert texts.count("–") == 7  # row and column of class 2
    assert texts[1] == f"{BC_01:.2f}"
    assert [label.get_text() for label in ax.get_xticklabels()] == ["cat", "dog", "fox", "owl"]
    plt.close(fig)
