"""Real models and data that ship in packages: nothing is downloaded at run time."""
from captum_qubo.zoo.digits import DigitsCNN, load_digits_split, train_digits_cnn
from captum_qubo.zoo.efficientnet import (
    efficientnet_target_layer,
    imagenet_class_names,
    load_efficientnet_lite0,
)
from captum_qubo.zoo.images import SAMPLE_IMAGES, load_sample_image, preprocess_image

__all__ = [
    "DigitsCNN",
    "SAMPLE_IMAGES",
    "efficientnet_target_layer",
    "imagenet_class_names",
    "load_digits_split",
    "load_efficientnet_lite0",
    "load_sample_image",
    "preprocess_image",
    "train_digits_cnn",
]
