"""The bundled models meet their targets (on real data when it is present)."""

import pytest

from earlyexit import checkpoint, data, traces
from earlyexit.data import FMNIST_DEFAULT_DIR
from earlyexit.profile import exit_costs
from tests.conftest import shared_path


def _accuracy(model: str, ds: data.Dataset) -> list[float]:
    return [float(a) for a in traces.collect(checkpoint.load(model), ds, progress=False).correct.mean(0)]


def test_bundled_models_load_by_name():
    assert {"fashion-mnist", "cifar10", "resnet8"} <= set(checkpoint.bundled_models())
    for name in ("fashion-mnist", "cifar10", "resnet8"):
        ckpt = checkpoint.load(name)
        assert ckpt.training["epochs_done"] == ckpt.training["config"]["epochs"]
        assert len(ckpt.classes) == 10


def test_fashion_mnist_on_the_bundled_samples():
    acc = _accuracy("fashion-mnist", data.load("fashion-mnist-samples", "test"))
    assert acc[-1] >= 0.90 and acc[0] >= 0.82


@pytest.mark.slow
def test_fashion_mnist_targets_on_the_full_test_split():
    if not FMNIST_DEFAULT_DIR.exists():
        pytest.skip(f"{FMNIST_DEFAULT_DIR} is absent: apt-get install dataset-fashion-mnist")
    acc = _accuracy("fashion-mnist", data.load("fashion-mnist", "test"))
    assert acc[-1] >= 0.92 and acc[0] >= 0.85


@pytest.mark.slow
def test_cifar10_targets_on_the_jpeg_test_split():
    root = shared_path("cifar10-jpeg")
    acc = _accuracy("cifar10", data.load("cifar10", "test", root))
    assert acc[-1] >= 0.85 and acc[0] >= 0.66


@pytest.mark.slow
def test_resnet8_reference_on_the_jpeg_test_split():
    """MLPerf Tiny's ResNet-8 trained here with cifar10's recipe, the fair reference (docs/models.md: 79.88 %)."""
    acc = _accuracy("resnet8", data.load("cifar10", "test", shared_path("cifar10-jpeg")))
    assert len(acc) == 1 and acc[0] >= 0.795


def test_cifar10_fits_the_nano33_up_to_its_second_exit():
    costs = exit_costs(checkpoint.load("cifar10").net)[:2]
    assert costs[-1].cumulative_int8_weight_bytes <= 150 * 1024
    assert max(c.peak_activation_bytes for c in costs) <= 64 * 1024
