import gzip
import os
import pickle
import tarfile

import numpy as np
import pytest

from earlyexit import data
from tests.conftest import shared_path


def _cifar_batch(n, seed):
    rng = np.random.default_rng(seed)
    return {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, n).tolist()}


def _write_cifar_folder(root, n=6):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {f"data_batch_{i}": _cifar_batch(n, i) for i in range(1, 6)}
    batches["test_batch"] = _cifar_batch(n, 9)
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch))
    return batches


def test_cifar_python_folder_is_read_as_hwc(tmp_path):
    batches = _write_cifar_folder(tmp_path)
    test = data.load("cifar10", "test", tmp_path)
    raw = batches["test_batch"][b"data"][0]
    assert test.x.shape == (6, 32, 32, 3)
    # channel-major rows: the first 1024 bytes are the red plane
    assert test.x[0, 0, 1, 0] == raw[1] and test.x[0, 0, 0, 1] == raw[1024]
    assert test.y.tolist() == batches["test_batch"][b"labels"]
    assert len(data.load("cifar10", "train", tmp_path, val_size=10)) == 20
    assert len(data.load("cifar10", "val", tmp_path, val_size=10)) == 10


def test_cifar_tar_gz_equals_the_folder(tmp_path):
    _write_cifar_folder(tmp_path / "src")
    archive = tmp_path / "arch" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    a = data.load("cifar10", "test", tmp_path / "src")
    b = data.load("cifar10", "test", archive.parent)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y)


def test_cifar_npz_layout(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (7, 32, 32, 3), dtype=np.uint8)
    np.savez(tmp_path / "cifar10_test.npz", x=x, y=np.arange(7, dtype=np.uint8))
    ds = data.load("cifar10", "test", tmp_path)
    assert np.array_equal(ds.x, x) and ds.y.dtype == np.int64


def _idx(array, ndim):
    header = bytes([0, 0, 0x08, ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def _write_fmnist(root, n=5):
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        (root / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images, 3)))
        (root / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labels, 1)))
    return images, labels


def test_fashion_mnist_idx_gz(tmp_path):
    images, labels = _write_fmnist(tmp_path)
    ds = data.load("fashion-mnist", "test", tmp_path)
    assert ds.x.shape == (5, 28, 28, 1)
    assert np.array_equal(ds.x[..., 0], images) and ds.y.tolist() == labels.tolist()


def test_bundled_samples_and_synthetic():
    samples = data.load("fashion-mnist-samples", "test")
    assert samples.x.shape == (1000, 28, 28, 1) and set(samples.y.tolist()) == set(range(10))
    with pytest.raises(data.DataError, match="--split test"):
        data.load("fashion-mnist-samples", "train")
    a, b = data.load("synthetic", "train"), data.load("synthetic", "train")
    assert np.array_equal(a.x, b.x)


def test_missing_dataset_says_where_it_looked_and_which_flag(tmp_path):
    with pytest.raises(data.DataError) as err:
        data.load("cifar10", "train", tmp_path / "nowhere")
    assert "nowhere" in str(err.value) and "--data-dir" in str(err.value)
    with pytest.raises(data.DataError, match="cifar-10-python.tar.gz"):
        data.load("cifar10", "train", tmp_path)
    with pytest.raises(data.DataError, match="dataset-fashion-mnist"):
        data.load("fashion-mnist", "test", tmp_path)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda raw: raw[:-10], "truncated"),
        (lambda raw: b"\x00\x00\x0d\x03" + raw[4:], "bad header"),
        (lambda raw: b"", "bad header"),
    ],
)
def test_malformed_idx_files_are_named(tmp_path, corrupt, message):
    _write_fmnist(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(corrupt(gzip.decompress(path.read_bytes()))))
    with pytest.raises(data.DataError, match=message) as err:
        data.load("fashion-mnist", "test", tmp_path)
    assert str(path) in str(err.value)


def test_malformed_cifar_files_are_named(tmp_path):
    _write_cifar_folder(tmp_path)
    bad = tmp_path / "cifar-10-batches-py" / "test_batch"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(data.DataError, match="test_batch"):
        data.load("cifar10", "test", tmp_path)
    np.savez(tmp_path / "cifar10_train.npz", x=np.zeros((2, 28, 28, 3), np.uint8), y=np.zeros(2))
    with pytest.raises(data.DataError, match="32x32x3"):
        data.load("cifar10", "train", tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "cifar-10-python.tar.gz").write_bytes(b"garbage")
    with pytest.raises(data.DataError, match="cannot read the archive"):
        data.load("cifar10", "test", tmp_path / "other")


class _RunsCode:
    """What a doctored batch could hold: unpickling it would call os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_would_run_code_is_refused_naming_the_file(tmp_path):
    batches = _write_cifar_folder(tmp_path)
    marker = tmp_path / "ran"
    bad = tmp_path / "cifar-10-batches-py" / "test_batch"
    bad.write_bytes(pickle.dumps({**batches["test_batch"], b"batch_label": _RunsCode(marker)}))
    with pytest.raises(data.DataError, match=r"test_batch: not a CIFAR-10 python batch .*system.*refused") as err:
        data.load("cifar10", "test", tmp_path)
    assert "\n" not in str(err.value)
    assert not marker.exists()
    assert len(data.load("cifar10", "train", tmp_path, val_size=10)) == 20  # the untouched batches still load


def test_unknown_names():
    with pytest.raises(data.DataError, match="choose one of"):
        data.load("imagenet", "test")
    with pytest.raises(data.DataError, match="choose one of"):
        data.load("synthetic", "holdout")


def test_mlperf_perf_samples_are_the_200_lossless_images():
    root = shared_path("mlperf-tiny")
    ds = data.load("mlperf-perf", "test", root)
    assert ds.x.shape == (200, 32, 32, 3) and ds.x.dtype == np.uint8
    assert ds.classes == data.CIFAR10_CLASSES and set(ds.y.tolist()) == set(range(10))
    first = (root / "ic01_perf_samples" / "labels.csv").read_text().splitlines()[0].split(",")
    raw = (root / "ic01_perf_samples" / first[0]).read_bytes()
    assert ds.x[0].tobytes() == raw and ds.y[0] == int(first[2])


def test_mlperf_perf_errors_name_the_file_and_line(tmp_path):
    (tmp_path / "a.bin").write_bytes(bytes(3072))
    (tmp_path / "b.bin").write_bytes(bytes(100))
    (tmp_path / "labels.csv").write_text("a.bin,10,3\n")
    assert data.load("mlperf-perf", "test", tmp_path).y.tolist() == [3]
    (tmp_path / "labels.csv").write_text("a.bin,10,3\na.bin,10,12\n")
    with pytest.raises(data.DataError, match=r"labels.csv:2: expected 'file,10,label'"):
        data.load("mlperf-perf", "test", tmp_path)
    (tmp_path / "labels.csv").write_text("b.bin,10,1\n")
    with pytest.raises(data.DataError, match="b.bin: 100 bytes, expected 3,072"):
        data.load("mlperf-perf", "test", tmp_path)
    (tmp_path / "labels.csv").write_text("c.bin,10,1\n")
    with pytest.raises(data.DataError, match="labels.csv:1: cannot read"):
        data.load("mlperf-perf", "test", tmp_path)
    with pytest.raises(data.DataError, match="test images only"):
        data.load("mlperf-perf", "train", tmp_path)
    with pytest.raises(data.DataError, match="no labels.csv"):
        data.load("mlperf-perf", "test", tmp_path / "a.bin")
