"""Real models and data that ship in packages: nothing is downloaded at run time."""
from captum_qubo.zoo.digits import DigitsCNN, load_digits_split, train_digits_cnn
from captum_qubo.zoo.efficientnet import (
    efficientnet_target_layer,
    imagenet_class_names,
    load_efficientnet_lite0,
)
from captum_qubo.zoo.images import NORMALIZATIONS, SAMPLE_IMAGES, load_sample_image, preprocess_image, read_image
from captum_qubo.zoo.models import ZOO_MODELS, LoadedModel, check_model_spec, load_model

__all__ = [
    "DigitsCNN",
    "LoadedModel",
    "NORMALIZATIONS",
    "SAMPLE_IMAGES",
    "ZOO_MODELS",
    "check_model_spec",
    "efficientnet_target_layer",
    "imagenet_class_names",
    "load_digits_split",
    "load_efficientnet_lite0",
    "load_model",
    "load_sample_image",
    "preprocess_image",
    "read_image",
    "train_digits_cnn",
]
