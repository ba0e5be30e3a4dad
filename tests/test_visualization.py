"""The explanation figure: Grad-CAM without a second pass, map shares, one colour scale, readable rendering."""
import numpy as np
import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam
from matplotlib import colormaps
from PIL import Image

from captum_qubo.visualization import (
    explanation_figure,
    grad_cam_from_weights,
    save_explanation_figure,
    selected_map_shares,
)
from captum_qubo.zoo import load_sample_image


def test_grad_cam_from_weights_is_captums_layer_grad_cam(digits_model, digits_data):
    _, _, x_test, y_test = digits_data
    x, y = x_test[:3], y_test[:3]
    reference = LayerGradCam(digits_model, digits_model.reduce).attribute(x, target=y, relu_attributions=True)
    reference = LayerAttribution.interpolate(reference.detach(), (16, 16), "bilinear")
    saved = {}
    handle = digits_model.reduce.register_forward_hook(lambda m, i, o: saved.update(maps=o))
    try:
        score = digits_model(x)[torch.arange(3), y].sum()
    finally:
        handle.remove()
    (gradients,) = torch.autograd.grad(score, saved["maps"])
    for i in range(3):
        ours = grad_cam_from_weights(gradients[i].mean(dim=(1, 2)), saved["maps"][i].detach(), (16, 16))
        torch.testing.assert_close(ours, reference[i:i + 1], rtol=1e-5, atol=1e-6)


def test_map_shares_are_each_maps_part_of_the_relu_mass():
    maps = torch.tensor([[[1.0, 3.0]], [[2.0, 2.0]], [[5.0, 5.0]], [[-1.0, 4.0]]])  # (4 maps, 1, 2)
    weights = torch.tensor([0.5, 1.0, 0.0, 1.0])  # map 2 not selected; map 3's negative pixel is clipped
    shares = selected_map_shares(weights, maps)
    # masses: 0.5*(1+3) = 2, 1*(2+2) = 4, 0, relu(-1)+4 = 4 → total 10; ties keep channel order
    assert shares == [(1, pytest.approx(0.4)), (3, pytest.approx(0.4)), (0, pytest.approx(0.2))]
    assert selected_map_shares(torch.zeros(4), maps) == []


@pytest.fixture(scope="module")
def figure_png(tmp_path_factory):
    image = load_sample_image("chelsea")[:100, 150:250]
    rows, columns = np.mgrid[0:100, 0:100]
    qubo = np.exp(-((rows - 30) ** 2 + (columns - 70) ** 2) / 50.0)  # peak at (30, 70), max 1
    grad_cam = 7.0 * np.exp(-((rows - 70) ** 2 + (columns - 20) ** 2) / 50.0)  # other scale, peak at (70, 20)
    title = "chelsea: a very long title that names the model, the predicted class, its probability and " * 2
    figure = explanation_figure(image, qubo, grad_cam, title, "QUBO (sa): 3 of 120 maps",
                                top_maps=[(345, 0.5), (7, 0.3), (12, 0.1), (3, 0.05), (9, 0.03), (1, 0.02)])
    path = save_explanation_figure(figure, tmp_path_factory.mktemp("figure") / "nested" / "figure.png")
    return figure, path, image


def test_figure_has_one_shared_colour_bar_and_lists_the_top_maps(figure_png):
    figure, path, _ = figure_png
    image_axes, bar_axes = figure.axes[:3], figure.axes[3:]
    assert len(bar_axes) == 1  # one colour bar for both maps: same scale
    assert "both maps" in bar_axes[0].get_ylabel()
    assert image_axes[2].get_title() == "Grad-CAM"
    label = image_axes[1].get_xlabel()
    assert "#345 50%" in label and "#9 3%" in label and "(+1 more)" in label
    assert [entry for entry in path.parent.iterdir()] == [path]  # no temporary file left behind


def test_peaks_are_drawn_in_the_colormap_top_colour_on_both_panels(figure_png):
    figure, path, image = figure_png
    with Image.open(path) as picture:
        assert picture.width >= 2000  # 200 dpi: fit for print
    figure.canvas.draw()  # at the figure's own dpi; axes positions below are in these pixels
    canvas = np.asarray(figure.canvas.buffer_rgba())[..., :3].astype(float) / 255
    height = canvas.shape[0]
    # At each panel's peak and at a point where the map is 0.487 of its maximum (6 pixels off the peak).
    points = ((figure.axes[1], 30, 70, 1.0), (figure.axes[2], 70, 20, 1.0), (figure.axes[2], 70, 26, np.exp(-36 / 50)))
    for axis, row, column, relative in points:
        box = axis.get_window_extent()  # display pixels, origin bottom-left
        x = int(box.x0 + (column + 0.5) / 100 * box.width)
        y = int(height - (box.y1 - (row + 0.5) / 100 * box.height))
        photo = image[row, column] / 255
        colour = np.asarray(colormaps["inferno"](relative)[:3])
        expected = 0.8 * relative * colour + (1 - 0.8 * relative) * photo  # opacity MAX_OPACITY * relative
        np.testing.assert_allclose(canvas[y, x], expected, atol=0.06)  # Grad-CAM at 7x the scale: same colours


def test_the_title_is_not_cut_off(figure_png):
    figure, _, _ = figure_png
    renderer = figure.canvas.get_renderer()
    title = figure._suptitle.get_window_extent(renderer)
    page = figure.bbox
    assert title.x0 >= page.x0 and title.x1 <= page.x1 and title.y1 <= page.y1
    assert "\n" in figure._suptitle.get_text()  # wrapped


def test_an_empty_map_says_so():
    image = load_sample_image("chelsea")[:64, :64]
    figure = explanation_figure(image, np.zeros((64, 64)), np.ones((64, 64)), "a title")
    assert "empty" in figure.axes[1].get_title() and figure.axes[2].get_title() == "Grad-CAM"
