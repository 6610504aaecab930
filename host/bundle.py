"""A build bundle (``build/<board>/``) as the host tiers read it: manifest, slices, policy, input table.

The manifest itself is read and checked by :mod:`contracts.manifest` (schema in docs/converter.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts import boards
from contracts.manifest import NAME, REBUILD, ManifestError, board_profile, read_manifest
from contracts.protocol import Tier
from converter import verify
from converter.flatbuf import TensorInfo
from converter.intslice import IntSlice
from policy import intpolicy
from policy.intpolicy import LearnedPolicy
from policy.threshold import ThresholdPolicy


class BundleError(Exception):
    """A bundle that is missing, stale or inconsistent; the message says how to fix it."""


@dataclass(frozen=True)
class Bundle:
    """The manifest and every slice (``slices[k]`` is slice k+1, the converter's ``IntSlice``)."""

    root: Path
    manifest: dict
    slices: tuple[IntSlice, ...]

    @property
    def model_hash(self) -> str:
        return self.manifest["model"]["hash"]

    @property
    def device_slices(self) -> int:
        return int(self.manifest["device_slices"])

    @property
    def board(self) -> str:
        return self.manifest["board"]

    @property
    def dataset(self) -> str:
        return self.manifest["model"]["dataset"]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the raw uint8 image the device takes."""
        _, h, w, c = self.slices[0].input.shape
        return h, w, c

    def board_profile(self) -> boards.Board:
        """The device's profile: the converter's copy in the bundle (``board.toml``), else ``boards/<board>.toml``."""
        try:
            return boards.load(board_profile(self.root, self.manifest))
        except ManifestError as err:
            raise BundleError(str(err)) from None
        except boards.BoardError as err:
            raise BundleError(f"{err}; {REBUILD}") from None

    def device_slice_us(self) -> tuple[int, ...]:
        """Each device slice's time on the board by its profile's MAC rate, in microseconds: the cost
        model learned policies are trained with, and the simulated device's clock."""
        board = self.board_profile()
        return tuple(round(1e6 * board.seconds_for(s["macs"])) for s in self.manifest["slices"][: self.device_slices])

    def policy(self, offload_after: int) -> ThresholdPolicy:
        """The threshold policy of a tier whose last slice is ``offload_after`` (1-based).

        It offloads at that exit when not confident, unless it is the model's last exit;
        ``offload_after = device_slices`` is the firmware's own policy.
        """
        thresholds = self.manifest["policy"]["thresholds"]
        return ThresholdPolicy.build([s.logits.scale for s in self.slices], thresholds, offload_after)

    def device_policy(self) -> ThresholdPolicy | LearnedPolicy:
        """The firmware's own policy: the exported learned one of ``--policy dqn|tabular|FILE``, else thresholds."""
        file = self.manifest["policy"].get("device")
        if file is None:
            return self.policy(self.device_slices)
        try:
            return intpolicy.load(self.root / file)
        except ValueError as err:
            raise BundleError(f"{err}; {REBUILD}") from None

    def tier_ranges(self, edge_slices: int | None = None) -> list[tuple[int, int, Tier]]:
        """(first, last, tier) for each tier that runs slices (1-based, inclusive).

        ``edge_slices`` None: no cloud, the edge runs every slice above the device's.
        """
        d, n = self.device_slices, len(self.slices)
        split = n if edge_slices is None else d + edge_slices
        ranges = [(1, d, Tier.DEVICE), (d + 1, split, Tier.EDGE), (split + 1, n, Tier.CLOUD)]
        return [r for r in ranges if r[0] <= r[1]]

    def input_lut(self) -> np.ndarray:
        """(C, 256) int8: raw pixel -> slice 1's quantized input, the firmware's table."""
        model, first = self.manifest["model"], self.slices[0].input
        return verify.input_lut(tuple(model["mean"]), tuple(model["std"]), first.scale, first.zero_point)


def load(root: str | Path) -> Bundle:
    """Read and check a bundle written by ``python -m converter build``."""
    root = Path(root)
    path = root / NAME
    try:
        manifest = read_manifest(root)
    except ManifestError as err:
        raise BundleError(str(err)) from None
    try:
        slices = tuple(_slice(root, k, entry) for k, entry in enumerate(manifest["slices"]))
        device, thresholds = int(manifest["device_slices"]), manifest["policy"]["thresholds"]
        model_hash = bytes.fromhex(manifest["model"]["hash"])
    except (KeyError, TypeError, ValueError) as err:
        raise BundleError(f"{path}: malformed manifest ({err!r}); {REBUILD}") from None
    if not 1 <= device <= len(slices):
        raise BundleError(f"{path}: {device} device slices of {len(slices)}; the host needs at least one on the device")
    if len(thresholds) != len(slices) or len(model_hash) != 32:
        raise BundleError(f"{path}: thresholds or model hash do not match the slices; {REBUILD}")
    return Bundle(root, manifest, slices)


def _tensor(entry: dict, name: str) -> TensorInfo:
    return TensorInfo(name, tuple(int(d) for d in entry["shape"]), float(entry["scale"]), int(entry["zero_point"]))


def _slice(root: Path, k: int, entry: dict) -> IntSlice:
    file = root / entry["file"]
    if int(entry["index"]) != k + 1:
        raise ValueError(f"slice entries out of order at {entry['index']}")
    if not file.is_file():
        raise BundleError(f"{file} is missing; {REBUILD}")
    data = file.read_bytes()
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise BundleError(f"{file} does not match its sha256 in manifest.json: the bundle is stale; {REBUILD}")
    outs, name = entry["outputs"], f"slice{k + 1}"
    trunk = _tensor(outs["trunk"], f"{name}/trunk") if "trunk" in outs else None
    return IntSlice(
        k, data, tuple(entry["ops"]), _tensor(entry["input"], f"{name}/input"), _tensor(outs["logits"], name), trunk
    )
