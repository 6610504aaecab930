"""Datasets as uint8 NHWC arrays + int64 labels, from the formats users have on disk.

- ``cifar10``: the standard ``cifar-10-batches-py`` folder, its ``cifar-10-python.tar.gz``
  archive, or ``cifar10_{train,test}.npz`` files holding ``x`` (N, 32, 32, 3) uint8 and ``y``.
  The python batches are pickles: they are read by an unpickler that admits only the types a
  batch holds (dicts, lists, bytes, numbers, numpy arrays), so a doctored file cannot run code.
- ``fashion-mnist``: the gzipped IDX files (``train-images-idx3-ubyte.gz`` ...), by default
  where Debian's ``dataset-fashion-mnist`` package installs them.
- ``fashion-mnist-samples``: 1,000 Fashion-MNIST test images bundled with this package,
  so that calibration and demos work offline (split ``test`` only).
- ``mlperf-perf``: the 200 lossless CIFAR-10 test images of the MLPerf Tiny image
  classification benchmark (``ic01_perf_samples/``: one 3,072-byte raw HWC RGB ``.bin`` per
  image, ``labels.csv`` rows ``file,10,label``; split ``test`` only).
- ``synthetic``: small generated images whose class is learnable, for fast tests.

Splits: ``train`` (the training set minus a fixed validation hold-out), ``val`` (that
hold-out, ``val_size`` images chosen with a fixed seed) and ``test``.
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
FMNIST_CLASSES = (
    "t-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
FMNIST_DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
CIFAR10_DEFAULT_DIR = Path("data/cifar10")
MLPERF_DEFAULT_DIR = Path("data/mlperf-tiny")
SAMPLES_FILE = Path(__file__).parent / "samples" / "fashion-mnist-test-1000.npz"
DATASETS = ("cifar10", "fashion-mnist", "fashion-mnist-samples", "mlperf-perf", "synthetic")
SPLITS = ("train", "val", "test")
DEFAULT_VAL_SIZE = 5000
_SPLIT_SEED = 20261127


class DataError(Exception):
    """A dataset is missing or malformed; the message says where and what to do."""


@dataclass(frozen=True)
class Dataset:
    """Images ``x`` (N, H, W, C) uint8, labels ``y`` (N,) int64, class names."""

    name: str
    split: str
    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.y)


def load(name: str, split: str, data_dir: str | Path | None = None, val_size: int = DEFAULT_VAL_SIZE) -> Dataset:
    """Load ``split`` of dataset ``name``; raises :class:`DataError` with a fix on failure."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    if name == "fashion-mnist-samples":
        if split != "test":
            raise DataError("fashion-mnist-samples holds test images only: pass --split test")
        x, y = _read_npz(SAMPLES_FILE)
        return Dataset(name, split, x, y, FMNIST_CLASSES)
    if name == "mlperf-perf":
        if split != "test":
            raise DataError("mlperf-perf holds test images only: pass --split test")
        x, y = _mlperf_perf(_resolve_dir(name, data_dir))
        return Dataset(name, split, x, y, CIFAR10_CLASSES)
    if name == "synthetic":
        x, y = synthetic(split)
        classes = tuple(str(c) for c in range(int(y.max()) + 1))
        return Dataset(name, split, x, y, classes)
    reader, classes = (_cifar10, CIFAR10_CLASSES) if name == "cifar10" else (_fashion_mnist, FMNIST_CLASSES)
    x, y = reader(_resolve_dir(name, data_dir), "test" if split == "test" else "train")
    if split != "test":
        x, y = _holdout(x, y, split, val_size)
    return Dataset(name, split, x, y, classes)


def _holdout(x: np.ndarray, y: np.ndarray, split: str, val_size: int) -> tuple[np.ndarray, np.ndarray]:
    if not 0 <= val_size < len(y):
        raise DataError(f"--val-size {val_size} must lie in 0..{len(y) - 1}")
    order = np.random.default_rng(_SPLIT_SEED).permutation(len(y))
    idx = np.sort(order[:val_size] if split == "val" else order[val_size:])
    return x[idx], y[idx]


def _resolve_dir(name: str, data_dir: str | Path | None) -> Path:
    default = {"cifar10": CIFAR10_DEFAULT_DIR, "mlperf-perf": MLPERF_DEFAULT_DIR}.get(name, FMNIST_DEFAULT_DIR)
    path = Path(data_dir) if data_dir is not None else default
    if not path.exists():
        raise DataError(f"{name}: no data at {path}. {_how_to_get(name)}")
    return path


def _how_to_get(name: str) -> str:
    if name == "cifar10":
        return (
            "Download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
            "(the archive or its extracted cifar-10-batches-py folder both work), or use npz files "
            "cifar10_train.npz/cifar10_test.npz with arrays x (N,32,32,3) uint8 and y; "
            f"put them in {CIFAR10_DEFAULT_DIR} or pass --data-dir DIR."
        )
    if name == "mlperf-perf":
        return (
            "Copy the ic01_perf_samples/ folder (200 .bin files and labels.csv) of the MLPerf Tiny "
            "benchmark's image classification data, and pass its folder or the folder above it as --data-dir DIR."
        )
    return (
        "Install Debian's package (apt-get install dataset-fashion-mnist, files land in "
        f"{FMNIST_DEFAULT_DIR}) or download the four *-idx?-ubyte.gz files from "
        "https://github.com/zalandoresearch/fashion-mnist and pass --data-dir DIR."
    )


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            x, y = f["x"], f["y"]
    except (OSError, ValueError, KeyError) as err:
        raise DataError(f"{path}: not a readable npz with arrays 'x' and 'y' ({err})") from None
    if x.dtype != np.uint8 or x.ndim != 4 or y.shape != (len(x),):
        raise DataError(f"{path}: expected x uint8 (N,H,W,C) and y (N,), got x {x.dtype}{x.shape}, y {y.shape}")
    return x, y.astype(np.int64)


# What a CIFAR-10 python batch references besides dicts, lists, bytes and numbers: its numpy arrays.
_CIFAR_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),  # the same, pickled by numpy 2
    }
)


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that loads only what a CIFAR-10 batch holds and refuses every other callable."""

    def find_class(self, module: str, name: str):
        if (module, name) in _CIFAR_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"it asks for {module}.{name}, which a CIFAR-10 batch never holds (refused: only dicts, lists, "
            "bytes and numpy arrays are loaded); download cifar-10-python.tar.gz again"
        )


def _check_cifar(x: np.ndarray, y: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    if x.shape[1:] != (32, 32, 3) or len(x) != len(y):
        raise DataError(f"{where}: expected 32x32x3 images and one label each, got {x.shape} and {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise DataError(f"{where}: labels must lie in 0..9, found {y.min()}..{y.max()}")
    return x, y


def _cifar10(root: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    npz = root / f"cifar10_{part}.npz"
    if npz.is_file():
        return _check_cifar(*_read_npz(npz), str(npz))
    names = [f"data_batch_{i}" for i in range(1, 6)] if part == "train" else ["test_batch"]
    folder = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
    if all((folder / n).is_file() for n in names):
        batches = [(str(folder / n), (folder / n).read_bytes()) for n in names]
    else:
        archive = root / "cifar-10-python.tar.gz" if root.is_dir() else root
        if not archive.is_file():
            raise DataError(
                f"cifar10: found neither cifar10_{part}.npz, cifar-10-batches-py/ nor "
                f"cifar-10-python.tar.gz in {root}. {_how_to_get('cifar10')}"
            )
        batches = _tar_members(archive, names)
    xs, ys = [], []
    for where, raw in batches:
        try:
            batch = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
            data = np.asarray(batch[b"data"], dtype=np.uint8)
            labels = np.asarray(batch[b"labels"], dtype=np.int64)
            xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as err:
            raise DataError(f"{where}: not a CIFAR-10 python batch ({type(err).__name__}: {err})") from None
        ys.append(labels)
    return _check_cifar(np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys), str(folder))


def _mlperf_perf(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """The perf samples in ``labels.csv`` order; ``root`` is ``ic01_perf_samples/`` or its parent."""
    folder = root / "ic01_perf_samples" if (root / "ic01_perf_samples").is_dir() else root
    labels = folder / "labels.csv"
    if not labels.is_file():
        raise DataError(f"mlperf-perf: no labels.csv in {folder}. {_how_to_get('mlperf-perf')}")
    xs, ys = [], []
    for line_no, line in enumerate(labels.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 3 or not fields[2].isdigit() or not 0 <= int(fields[2]) <= 9:
            raise DataError(f"{labels}:{line_no}: expected 'file,10,label' with label 0..9, got {line!r}")
        path = folder / fields[0]
        try:
            raw = path.read_bytes()
        except OSError as err:
            raise DataError(f"{labels}:{line_no}: cannot read {path} ({err.strerror}); copy the sample again") from None
        if len(raw) != 32 * 32 * 3:
            raise DataError(f"{path}: {len(raw)} bytes, expected 3,072 (32x32x3 raw RGB); copy the sample again")
        xs.append(np.frombuffer(raw, dtype=np.uint8).reshape(32, 32, 3))
        ys.append(int(fields[2]))
    if not ys:
        raise DataError(f"{labels}: lists no samples")
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def _tar_members(archive: Path, names: list[str]) -> list[tuple[str, bytes]]:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            missing = [n for n in names if n not in members]
            if missing:
                raise DataError(f"{archive}: archive lacks {', '.join(missing)}; is it cifar-10-python.tar.gz?")
            return [(f"{archive}:{n}", tar.extractfile(members[n]).read()) for n in names]
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"{archive}: cannot read the archive ({err}); download it again") from None


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes (gzipped or plain) with ``ndim`` dimensions."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read ({err}); download the file again") from None
    if len(raw) < 4 + 4 * ndim or raw[:2] != b"\0\0" or raw[2] != 0x08 or raw[3] != ndim:
        raise DataError(f"{path}: not an IDX file of {ndim}-d unsigned bytes (bad header)")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = raw[4 + 4 * ndim :]
    if len(body) != int(np.prod(dims)):
        raise DataError(f"{path}: header says {dims} but holds {len(body)} bytes; the file is truncated")
    return np.frombuffer(body, dtype=np.uint8).reshape(dims).copy()


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise DataError(f"fashion-mnist: {stem}.gz not found in {root}. {_how_to_get('fashion-mnist')}")


def _fashion_mnist(root: Path, part: str) -> tuple[np.ndarray, np.ndarray]:
    prefix = "train" if part == "train" else "t10k"
    images = _read_idx(_find(root, f"{prefix}-images-idx3-ubyte"), 3)
    labels = _read_idx(_find(root, f"{prefix}-labels-idx1-ubyte"), 1).astype(np.int64)
    if len(images) != len(labels):
        raise DataError(f"fashion-mnist in {root}: {len(images)} images but {len(labels)} labels")
    return images[..., None], labels


def synthetic(
    split: str, n: int | None = None, size: int = 16, channels: int = 3, classes: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy images whose class sets which quadrant is bright: learnable in a few steps."""
    count = n if n is not None else {"train": 512, "val": 128, "test": 256}[split]
    rng = np.random.default_rng({"train": 0, "val": 1, "test": 2}[split])
    y = rng.integers(0, classes, count)
    x = rng.normal(96, 24, (count, size, size, channels))
    half = size // 2
    for c in range(classes):
        r, q = divmod(c % 4, 2)
        x[y == c, r * half : (r + 1) * half, q * half : (q + 1) * half, :] += 96
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)
