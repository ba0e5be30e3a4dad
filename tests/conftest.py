"""Shared fixtures: the real models and photos the tests explain, loaded once per test process."""
import os

import pytest
import torch

from captum_qubo.zoo import (
    efficientnet_target_layer,
    load_digits_split,
    load_efficientnet_lite0,
    load_sample_image,
    preprocess_image,
    train_digits_cnn,
)

EGYPTIAN_CAT = 285

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One thread per xdist worker, for torch and for numpy's BLAS: `pytest -n 2` on 2 cores would otherwise
    # oversubscribe (small dense eigh/expm ran 35× slower that way).
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    threadpool_limits(1)


@pytest.fixture(scope="session")
def efficientnet():
    """Pretrained EfficientNet-Lite0 (eval mode); tests must not modify it."""
    return load_efficientnet_lite0()


@pytest.fixture(scope="session")
def efficientnet_layer(efficientnet):
    return efficientnet_target_layer(efficientnet)


@pytest.fixture(scope="session")
def chelsea():
    """skimage's chelsea photo as a (1, 3, 224, 224) EfficientNet input."""
    return preprocess_image(load_sample_image("chelsea"))[None]


@pytest.fixture(scope="session")
def digits_data():
    """(x_train, y_train, x_test, y_test) of sklearn's digits, seeded split."""
    return load_digits_split(seed=0)


@pytest.fixture(scope="session")
def digits_model():
    """The digits CNN with N_f = 16 maps in its reduce block (trained once, cached on disk)."""
    return train_digits_cnn(num_filters=16, seed=0)
