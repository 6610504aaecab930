"""The host's view of a build bundle, the offline reference, and the tiny bundle every host test shares.

``tiny_bundle`` builds one real bundle per session: a tiny synthetic model, one slice on
the device so that offloads happen, and thresholds taken from the float model's own
confidences so that answers spread over all three exits. Its conversions are cached in
pytest's cache directory, keyed by content like any build.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from contracts.manifest import ManifestError
from contracts.protocol import Tier
from converter import verify
from converter.build import BuildOptions, run
from earlyexit import checkpoint, data, traces
from earlyexit.arch import ArchConfig, BlockSpec, HeadSpec
from earlyexit.model import EarlyExitNet
from earlyexit.train import config_for, train
from host import bundle as bundles
from host import offline
from policy import costs

_BUILT: dict[Path, Path] = {}


def tiny_bundle(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's tiny bundle (built on first use)."""
    root = tmp_path_factory.getbasetemp()
    if root not in _BUILT:
        arch = ArchConfig(
            "tiny",
            3,
            16,
            4,
            blocks=(BlockSpec((4,)), BlockSpec((8, 8)), BlockSpec((8,), pool=False)),
            exits=(0, 1, 2),
            heads=(HeadSpec("conv", 8), HeadSpec(), HeadSpec()),
        )
        work = tmp_path_factory.mktemp("host-bundle")
        cfg = config_for("fast", "synthetic", epochs=3, batch_size=64, lr=0.05)
        torch.manual_seed(0)  # this fixture may run after any other test: the same weights every time
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # a tiny model: threads only add contention (and change the weights)
        try:
            train(EarlyExitNet(arch), data.load("synthetic", "train"), None, cfg, work / "tiny.pt", progress=False)
        finally:
            torch.set_num_threads(threads)
        top = traces.collect(checkpoint.load(work / "tiny.pt"), data.load("synthetic", "test"), progress=False)
        top = top.probs.max(-1)  # (N, exits): the float model's confidence at every exit
        thresholds = (float(np.quantile(top[:, 0], 0.7)), float(np.quantile(top[:, 1], 0.5)), 0.9)
        opts = BuildOptions(
            board="nano33",
            model=str(work / "tiny.pt"),
            out=work / "nano33",
            cache_dir=tmp_path_factory.mktemp("host-converter-cache"),
            device_slices=1,
            thresholds=thresholds,
        )
        run(opts, say=lambda _: None)
        _BUILT[root] = opts.out
    return _BUILT[root]


@pytest.fixture(scope="module")
def bundle(request, tmp_path_factory):
    return bundles.load(tiny_bundle(request, tmp_path_factory))


def test_bundle_reads_the_manifest(bundle):
    manifest = json.loads((bundle.root / "manifest.json").read_text())
    assert bundle.model_hash == manifest["model"]["hash"] and bundle.device_slices == 1
    assert [s.index for s in bundle.slices] == [0, 1, 2] and bundle.input_shape == (16, 16, 3)
    assert bundle.slices[0].tflite == (bundle.root / "device" / "slice1.tflite").read_bytes()
    assert bundle.slices[2].trunk is None
    assert bundle.tier_ranges() == [(1, 1, Tier.DEVICE), (2, 3, Tier.EDGE)]
    assert bundle.tier_ranges(0) == [(1, 1, Tier.DEVICE), (2, 3, Tier.CLOUD)]
    assert bundle.tier_ranges(1) == [(1, 1, Tier.DEVICE), (2, 2, Tier.EDGE), (3, 3, Tier.CLOUD)]


def test_a_stale_or_missing_bundle_is_refused(bundle, tmp_path):
    with pytest.raises(bundles.BundleError, match="not a build bundle"):
        bundles.load(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(bundle.root, copy)
    (copy / "edge" / "slice2.tflite").write_bytes(b"stale")
    with pytest.raises(bundles.BundleError, match=r"slice2.tflite does not match its sha256.*rebuild"):
        bundles.load(copy)
    (copy / "edge" / "slice2.tflite").unlink()
    with pytest.raises(bundles.BundleError, match="slice2.tflite is missing"):
        bundles.load(copy)


def test_an_edited_board_profile_copy_is_refused(bundle, tmp_path):
    """board.toml sets the simulated device's clock: its sha256 in the manifest guards it too."""
    copy = tmp_path / "copy"
    shutil.copytree(bundle.root, copy)
    assert bundles.load(copy).board_profile().name == "nano33"
    profile = copy / "board.toml"
    profile.write_text(profile.read_text().replace("clock_hz = 64_000_000", "clock_hz = 640_000_000"))
    with pytest.raises(bundles.BundleError, match=r"board.toml does not match its sha256.*rebuild"):
        bundles.load(copy).board_profile()
    with pytest.raises(ManifestError, match=r"board.toml does not match its sha256.*rebuild"):
        costs.from_manifest(copy / "manifest.json")  # the policy's cost model reads the same guarded copy


def test_offline_reference_is_the_first_confident_exit_of_the_tflm_chain(bundle):
    test = data.load("synthetic", "test")
    decisions = offline.evaluate(bundle, test.x[:64])
    chain = verify.run_chain(
        list(bundle.slices), verify.quantize_images(test.x[:64], bundle.input_lut()), verify.tflm_runner
    )
    policy = bundle.policy(3)
    for n, d in enumerate(decisions):
        k = next(k for k in range(3) if k == 2 or policy.confident(k, chain.logits[k][n]))
        assert (d.exit, d.label) == (k + 1, int(np.argmax(chain.logits[k][n])))
        assert d.tier == (Tier.DEVICE if k == 0 else Tier.EDGE)
    assert {d.exit for d in decisions} == {1, 2, 3}, "the thresholds should spread answers over every exit"
    with_cloud = offline.evaluate(bundle, test.x[:64], edge_slices=1)
    assert [(d.label, d.exit) for d in with_cloud] == [(d.label, d.exit) for d in decisions]
    assert [d.tier for d in with_cloud] == [[Tier.DEVICE, Tier.EDGE, Tier.CLOUD][d.exit - 1] for d in decisions]
