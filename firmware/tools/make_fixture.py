"""Regenerate firmware/test/fixture: the converter's real output for a tiny synthetic model.

    python firmware/tools/make_fixture.py [--model CKPT] [--work DIR]

Trains the tiny 3-exit model of tests/test_build.py on synthetic data (a few seconds, unless
``--model`` names a checkpoint), builds it for nano33 with 2 of its 3 slices on the device and
thresholds of 0.5 (so that every device exit can both exit and stay), and copies into the fixture:
the generated ee_model.h, ee_model_data.cc, ee_policy.{h,c}, the demo samples, and
``tflm_expected.txt``: each demo sample's int8 logits and trunk per device slice as the Python
TFLite Micro interpreter computes them (``make -C firmware tflm-check`` compares the C++ glue
against it). Lines: ``sample slice n_logits logits... n_trunk trunk...``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import demo_samples  # noqa: E402

from contracts.manifest import read_manifest  # noqa: E402
from converter import verify  # noqa: E402
from converter.build import BuildOptions, run  # noqa: E402

FIXTURE = Path(__file__).resolve().parents[1] / "test" / "fixture"
GENERATED = ("ee_model.h", "ee_model_data.cc", "ee_policy.h", "ee_policy.c", "ee_demo_samples.h", "ee_demo_samples.c")
DEVICE_SLICES = 2
THRESHOLDS = (0.5, 0.5, 0.5)
DEMO_COUNT = 4


def train_tiny(out: Path) -> Path:
    """The tiny synthetic model of tests/test_build.py, trained for 3 epochs (seeded, one thread)."""
    import torch

    from earlyexit import data
    from earlyexit.arch import ArchConfig, BlockSpec, HeadSpec
    from earlyexit.model import EarlyExitNet
    from earlyexit.train import config_for, train

    arch = ArchConfig(
        "tiny",
        3,
        16,
        4,
        blocks=(BlockSpec((4,)), BlockSpec((8, 8)), BlockSpec((8,), pool=False)),
        exits=(0, 1, 2),
        heads=(HeadSpec("conv", 8), HeadSpec(), HeadSpec()),
    )
    cfg = config_for("fast", "synthetic", epochs=3, batch_size=64, lr=0.05)
    ckpt = out / "tiny.pt"
    torch.manual_seed(0)  # the same fixture on every run
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thread count changes float sums, and so the weights
    try:
        train(EarlyExitNet(arch), data.load("synthetic", "train"), None, cfg, ckpt, progress=False)
    finally:
        torch.set_num_threads(threads)
    return ckpt


def tflm_expected(build: Path, manifest: dict) -> str:
    """Per demo sample and device slice: the Python TFLM interpreter's int8 logits and trunk."""
    from tflite_micro.python.tflite_micro import runtime

    model = manifest["model"]
    first = manifest["slices"][0]["input"]
    lut = verify.input_lut(model["mean"], model["std"], first["scale"], first["zero_point"])
    images, _ = demo_samples.load_samples(manifest, DEMO_COUNT, None)
    device = [s for s in manifest["slices"] if s["tier"] == "device"]
    interps = []
    for s in device:
        tflite = (build / "device" / f"slice{s['index']}.tflite").read_bytes()
        interps.append(runtime.Interpreter.from_bytes(tflite, arena_size=s["arena_bytes"]))
    lines = []
    for n, x in enumerate(verify.quantize_images(images, lut)):
        h = x[None]
        for k, interp in enumerate(interps):
            interp.set_input(h, 0)
            interp.invoke()
            outs = {o.ndim: o for o in (interp.get_output(i).copy() for i in range(len(device[k]["outputs"])))}
            logits, trunk = outs[2].ravel(), outs.get(4)
            h = trunk
            values = [] if trunk is None else trunk.ravel().tolist()
            lines.append(" ".join(str(v) for v in [n, k, len(logits), *logits.tolist(), len(values), *values]))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="checkpoint to build (default: train the tiny one)")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="eefixture-"))
    work.mkdir(parents=True, exist_ok=True)
    ckpt = args.model or train_tiny(work)
    build = work / "nano33"
    run(
        BuildOptions(
            board="nano33",
            model=str(ckpt),
            out=build,
            cache_dir=work / "cache",
            device_slices=DEVICE_SLICES,
            thresholds=THRESHOLDS,
        ),
        say=print,
    )
    manifest = read_manifest(build)
    demo_samples.write(build, DEMO_COUNT)
    expected = tflm_expected(build, manifest)
    if FIXTURE.exists():
        shutil.rmtree(FIXTURE)
    FIXTURE.mkdir(parents=True)
    for name in GENERATED:
        shutil.copy(build / "firmware" / name, FIXTURE / name)
    (FIXTURE / "tflm_expected.txt").write_text(expected)
    print(f"wrote {FIXTURE} ({np.sum([p.stat().st_size for p in FIXTURE.iterdir()]):,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
