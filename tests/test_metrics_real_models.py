"""The metrics on the project's real models: the digits CNN and pretrained EfficientNet-Lite0."""
import pytest
import torch
from captum._utils.gradient import compute_layer_gradients_and_eval
from captum.attr import LayerAttribution, LayerGradCam

from captum_qubo.metrics import ClassDisentanglement, deletion_insertion_curve, masked_confidences, top_k_mask

K = 3


def test_grad_cam_top_k_disentanglement_on_digits_matches_the_linear_head(digits_model, digits_data):
    """The digits head is linear right after the explained layer, so the Grad-CAM weight of map a
    for class c is the spatial mean of the head's weights (METHOD.md §3 note): every image of a
    class selects the same top-K set S_c, p_c is uniform on it and BC(c, c') = |S_c ∩ S_c'| / K."""
    _, _, x_test, _ = digits_data
    images = x_test[:200]
    with torch.no_grad():
        predicted = digits_model(images).argmax(dim=1)
    gradients, _ = compute_layer_gradients_and_eval(digits_model, digits_model.reduce, images, target_ind=predicted)
    channel_weights = gradients[0].mean(dim=(2, 3))
    metric = ClassDisentanglement(num_classes=10, num_channels=digits_model.num_filters)
    metric.update(top_k_mask(channel_weights, K), predicted)
    matrix = metric.compute()["matrix"]

    head_weights = digits_model.head.weight.detach().view(10, digits_model.num_filters, -1).mean(dim=2)
    class_sets = top_k_mask(head_weights, K).double()
    expected = class_sets @ class_sets.T / K
    present = torch.zeros(10, dtype=torch.bool)
    present[predicted.unique()] = True
    assert present.sum() >= 8
    torch.testing.assert_close(matrix[present][:, present], expected[present][:, present])


@pytest.fixture(scope="module")
def chelsea_grad_cam(efficientnet, efficientnet_layer, chelsea):
    with torch.no_grad():
        target = int(efficientnet(chelsea).argmax())
    cam = LayerGradCam(efficientnet, efficientnet_layer).attribute(chelsea, target=target, relu_attributions=True)
    cam = LayerAttribution.interpolate(cam, chelsea.shape[2:], "bilinear")
    cam = (cam - cam.min()) / (cam.max() - cam.min())
    return cam.detach(), target


def test_grad_cam_beats_its_reverse_on_deletion_and_insertion(efficientnet, chelsea, chelsea_grad_cam):
    cam, target = chelsea_grad_cam
    images, saliency = chelsea.expand(2, -1, -1, -1), torch.cat([cam, 1.0 - cam])  # Grad-CAM, reversed
    areas = {}
    for mode, baseline in (("deletion", "zeros"), ("insertion", "blur")):
        fractions, probabilities = deletion_insertion_curve(
            efficientnet, images, saliency, target, mode, steps=4, baseline=baseline
        )
        areas[mode] = torch.trapezoid(probabilities.double(), fractions, dim=1)
    assert areas["deletion"][0] < areas["deletion"][1]
    assert areas["insertion"][0] > areas["insertion"][1]
    assert not efficientnet.training


def test_masked_confidences_on_efficientnet(efficientnet, chelsea, chelsea_grad_cam):
    cam, target = chelsea_grad_cam
    base, masked = masked_confidences(efficientnet, chelsea, cam, target)
    with torch.no_grad():
        expected_base = torch.softmax(efficientnet(chelsea), dim=1)[0, target]
        expected_masked = torch.softmax(efficientnet(chelsea * cam), dim=1)[0, target]
    torch.testing.assert_close(base[0], expected_base)
    torch.testing.assert_close(masked[0], expected_masked)
