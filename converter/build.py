"""``converter build``: checkpoint -> verified int8 slices placed on tiers -> build/<board>/."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from dataclasses import KW_ONLY, dataclass
from pathlib import Path

import numpy as np

from contracts import boards
from contracts.manifest import BOARD_COPY, VERSION, write_manifest
from contracts.placement import Fit, PlacementError, SliceNeeds, empty_device, over_deadline, place, shared_arena_bytes
from converter import codegen, native, report, verify
from converter.errors import ConvertError
from converter.slicing import IntSlice, convert
from earlyexit import checkpoint, data, traces
from earlyexit.profile import exit_costs
from policy import intpolicy
from policy.threshold import ThresholdPolicy

CALIBRATION_SAMPLES = 200
DEFAULT_THRESHOLD = 0.9


@dataclass(frozen=True)
class BuildOptions:
    board: str
    _: KW_ONLY  # the rest by name: a positional model once landed in the new link field
    link: str | None = None  # the board's link to the edge (default: the profile's first)
    model: str = "fashion-mnist"
    data_dir: str | None = None
    device_slices: int | None = None
    out: Path | None = None
    cache_dir: Path = Path("build/cache")
    eval_samples: int | None = None
    thresholds: tuple[float, ...] | None = None
    policy: str = "threshold"  # the device's: threshold, dqn, tabular or a `policy train --out` file
    policy_beta: float | None = None  # dqn / tabular learned here: default the calibrated beta (policy/embed.py)
    policy_episodes: int = 10_000  # dqn / tabular learned here
    policy_class_weights: str | None = None  # dqn / tabular learned here: `policy train --class-weights` W
    runtime: str = "tflm"  # or "native" (docs/native.md)
    allow_empty_device: bool = False  # build an edge-only bundle when no slice fits (else an error)


def _samples(ckpt: checkpoint.Checkpoint, opts: BuildOptions) -> tuple[np.ndarray, data.Dataset]:
    """Calibration images (training data) and the evaluation set.

    Without ``--data-dir`` a Fashion-MNIST model uses the bundled 1,000 test images: the
    first 200 calibrate, the other 800 evaluate.
    """
    if opts.data_dir is None and ckpt.dataset == "fashion-mnist":
        bundled = data.load("fashion-mnist-samples", "test")
        evaluation = data.Dataset(
            bundled.name,
            "test[200:]",
            bundled.x[CALIBRATION_SAMPLES:],
            bundled.y[CALIBRATION_SAMPLES:],
            bundled.classes,
        )
        return bundled.x[:CALIBRATION_SAMPLES], evaluation
    try:
        train = data.load(ckpt.dataset, "train", opts.data_dir)
        test = data.load(ckpt.dataset, "test", opts.data_dir)
    except data.DataError as err:
        raise ConvertError(f"calibration data is missing: {err}") from None
    pick = np.random.default_rng(0).choice(len(train), CALIBRATION_SAMPLES, replace=False)
    if opts.eval_samples and opts.eval_samples < len(test):
        # a seeded random subset: test sets may be sorted by class
        keep = np.sort(np.random.default_rng(1).choice(len(test), opts.eval_samples, replace=False))
        split = f"{test.split}[{opts.eval_samples} random]"
        test = data.Dataset(test.name, split, test.x[keep], test.y[keep], test.classes)
    return train.x[np.sort(pick)], test


def _sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)


def run(opts: BuildOptions, say=print, warn=_warn, progress: bool | None = None) -> dict:
    """Build everything for ``opts.board``; returns the manifest (also written to disk).

    ``say`` prints the step lines; ``progress`` (None: when stderr is a terminal) adds bars on stderr.
    Stops with a :class:`ConvertError` when no slice fits the device (unless ``opts.allow_empty_device``);
    ``warn`` gets the one-line warning when the device slices take longer than the firmware's default deadline.
    """
    t0 = time.perf_counter()
    stage = iter(range(1, 7))

    def step(text: str) -> None:
        say(f"[{next(stage)}/6] {text} ({time.perf_counter() - t0:.1f} s)")

    board = boards.load(opts.board, opts.link)
    edge = boards.load(board.links[0].to) if board.links else None
    if opts.policy not in ("threshold", "dqn", "tabular") and not Path(opts.policy).is_file():
        raise ConvertError(f"--policy {opts.policy}: choose threshold, dqn, tabular or an existing policy file")
    step(f"loading model {opts.model} for {board.name}")
    try:
        ckpt = checkpoint.load(opts.model)
    except checkpoint.CheckpointError as err:
        raise ConvertError(str(err)) from None
    weights = _class_weights(opts, ckpt)
    calibration, evaluation = _samples(ckpt, opts)
    step(f"converting {ckpt.arch.num_exits} slices to int8 (calibration: {len(calibration)} samples)")
    slices = convert(ckpt, calibration, opts.cache_dir, progress=progress)
    step(f"verifying the int8 chain in TFLM and LiteRT on {len(evaluation)} samples of {evaluation.name}")
    check = _verify_cached(ckpt, slices, evaluation, opts.cache_dir, progress)
    step("placing slices on tiers")
    needs = [
        SliceNeeds(
            len(s.tflite),
            a[1],
            int(np.prod(s.input.shape)),
            int(np.prod(s.trunk.shape)) if s.trunk else 0,
            ckpt.arch.num_classes,
            a[2],
        )
        for s, a in zip(slices, check["arena"])
    ]
    try:
        fit = place(needs, board, opts.device_slices)
    except PlacementError as err:
        raise ConvertError(str(err)) from None
    if fit.device_slices == 0 and not opts.allow_empty_device:
        raise ConvertError(empty_device(needs, board, opts.device_slices))
    macs = [c.stage.macs + c.head.macs for c in exit_costs(ckpt.net)[: fit.device_slices]]
    late = over_deadline([round(1e6 * board.seconds_for(m)) for m in macs], board)  # as Bundle.device_slice_us
    if late:
        warn(late)
    step("writing firmware sources, edge bundle, manifest and report")
    out = opts.out or Path("build") / board.name
    manifest = _write(out, ckpt, board, edge, slices, check, fit, opts, weights, progress)
    step(f"done: {out} ({fit.device_slices} of {len(slices)} slices on {board.name})")
    return manifest


def _verify_cached(
    ckpt: checkpoint.Checkpoint, slices: list[IntSlice], ds: data.Dataset, cache: Path, progress: bool | None
) -> dict:
    """:func:`_verify`, reused when the model, every slice and the evaluation set are unchanged."""
    h = hashlib.sha256(ckpt.model_hash().encode())
    for s in slices:
        h.update(s.tflite)
    h.update(ds.x.tobytes())
    h.update(ds.y.tobytes())
    path = cache / f"verify-{h.hexdigest()[:32]}.json"
    if path.is_file():
        check = json.loads(path.read_text())
        check["lut"] = np.array(check["lut"], dtype=np.int8)
        check["arena"] = [tuple(a) for a in check["arena"]]
        if all(len(a) == 3 for a in check["arena"]):  # older caches lack the persistent tail
            return check
        check["arena"] = [verify.arena_bytes(s.tflite) for s in slices]
    else:
        check = _verify(ckpt, slices, ds, progress)
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**check, "lut": check["lut"].tolist()}))
    return check


def _verify(ckpt: checkpoint.Checkpoint, slices: list[IntSlice], ds: data.Dataset, progress: bool | None) -> dict:
    lut = verify.input_lut(ckpt.mean, ckpt.std, slices[0].input.scale, slices[0].input.zero_point)
    x = verify.quantize_images(ds.x, lut)
    micro = verify.run_chain(slices, x, verify.tflm_runner, "TFLM", progress)
    ref = verify.run_chain(slices, x, verify.litert_runner, "LiteRT", progress)
    float_traces = traces.collect(ckpt, ds, progress=False)
    result = {
        "lut": lut,
        "arena": [verify.arena_bytes(s.tflite) for s in slices],
        "float_accuracy": [float(v) for v in float_traces.correct.mean(0)],
        "int8_accuracy": [float((z.argmax(1) == ds.y).mean()) for z in micro.logits],
        "litert_int8_accuracy": [float((z.argmax(1) == ds.y).mean()) for z in ref.logits],
        "argmax_agreement": [float((a.argmax(1) == b.argmax(1)).mean()) for a, b in zip(micro.logits, ref.logits)],
        "trunks_identical": [bool(np.array_equal(a, b)) for a, b in zip(micro.trunks, ref.trunks)],
        "samples": len(ds),
        "dataset": f"{ds.name}/{ds.split}",
    }
    if not all(result["trunks_identical"]):
        bad = [k + 1 for k, same in enumerate(result["trunks_identical"]) if not same]
        raise ConvertError(
            f"TFLM and LiteRT reference kernels disagree on the trunk activation of slice(s) {bad}: "
            "the int8 chain is not reproducible; report this with the model."
        )
    return result


def _write(out: Path, ckpt, board, edge, slices, check, fit: Fit, opts: BuildOptions, weights, progress) -> dict:
    if out.exists():
        shutil.rmtree(out)
    for tier in ("device", "edge"):
        (out / tier).mkdir(parents=True)
    costs = exit_costs(ckpt.net)
    d = fit.device_slices
    thresholds = list(opts.thresholds or [DEFAULT_THRESHOLD] * len(slices))
    policy, policy_entry = ThresholdPolicy.build([s.logits.scale for s in slices], thresholds, d), {}
    if opts.policy != "threshold" and d:
        policy, policy_entry = _learned_policy(out, opts, ckpt, board, slices, costs, d, weights, progress)
    device_arena = shared_arena_bytes(
        [SliceNeeds(0, check["arena"][k][1], 0, 0, 0, check["arena"][k][2]) for k in range(d)]
    )
    firmware = codegen.FirmwareModel(
        model_name=Path(opts.model).stem,
        model_hash=ckpt.model_hash(),
        slices=slices[:d],
        num_slices=len(slices),
        num_classes=ckpt.arch.num_classes,
        input_lut=check["lut"],
        arena_bytes=device_arena,
        policy=policy,
    )
    native_summary = None
    if d:
        codegen.write(firmware, out / "firmware")
        if opts.runtime == "native":
            native_summary = native.write(firmware, out / "firmware").to_json()
    entries = []
    for k, s in enumerate(slices):
        tier = "device" if k < d else "edge"
        name = f"slice{k + 1}.tflite"
        (out / tier / name).write_bytes(s.tflite)
        macs = costs[k].stage.macs + costs[k].head.macs
        runner = board if tier == "device" else edge
        entries.append(
            {
                "index": k + 1,
                "tier": tier,
                "file": f"{tier}/{name}",
                "sha256": _sha256(s.tflite),
                "bytes": len(s.tflite),
                "arena_bytes": check["arena"][k][1],
                "arena_used_bytes": check["arena"][k][0],
                "macs": macs,
                "ops": list(s.ops),
                "input": _tensor(s.input),
                "outputs": {"logits": _tensor(s.logits), **({"trunk": _tensor(s.trunk)} if s.trunk else {})},
                "float_accuracy": round(check["float_accuracy"][k], 6),
                "int8_accuracy": round(check["int8_accuracy"][k], 6),
                "litert_int8_accuracy": round(check["litert_int8_accuracy"][k], 6),
                "tflm_litert_argmax_agreement": round(check["argmax_agreement"][k], 6),
                "estimated_latency_ms": round(1e3 * runner.seconds_for(macs), 4) if runner else None,
                "estimated_energy_mj": round(runner.energy_mj_for(macs), 6) if runner else None,
            }
        )
    manifest = {
        "manifest_version": VERSION,
        "model": {
            "name": Path(opts.model).stem,
            "hash": ckpt.model_hash(),
            "arch": ckpt.arch.name,
            "dataset": ckpt.dataset,
            "classes": list(ckpt.classes),
            "mean": list(ckpt.mean),
            "std": list(ckpt.std),
        },
        "board": board.name,
        "board_profile_sha256": hashlib.sha256(board.path.read_bytes()).hexdigest(),  # its copy, board.toml
        "link": board.links[0].name if board.links else None,
        "edge": edge.name if edge else None,
        "device_slices": d,
        "fit": {
            "flash_needed": fit.flash_needed,
            "flash_available": fit.flash_available,
            "ram_needed": fit.ram_needed,
            "ram_available": fit.ram_available,
            "arena_bytes": device_arena,
        },
        "policy": {"kind": "threshold", "thresholds": thresholds, **policy_entry},
        "runtime": {"kind": opts.runtime, **({"native": native_summary} if native_summary else {})},
        "verification": {
            "dataset": check["dataset"],
            "samples": check["samples"],
            "trunks_identical": check["trunks_identical"],
        },
        "slices": entries,
    }
    (out / BOARD_COPY).write_text(board.path.read_text())  # the host's device clock, whatever --board named
    manifest = write_manifest(out, manifest)
    report.write(out, manifest, board.energy_mj_for)
    return manifest


def _class_weights(opts: BuildOptions, ckpt: checkpoint.Checkpoint) -> tuple[float, ...]:
    """``--policy-class-weights``, checked before anything is converted."""
    from policy.class_weights import class_weights

    if opts.policy_class_weights is not None and opts.policy not in ("dqn", "tabular"):
        raise ConvertError("--policy-class-weights applies to a policy learned in the build: add --policy dqn|tabular")
    return class_weights(opts.policy_class_weights, ckpt.classes, "--policy-class-weights")


def _learned_policy(out: Path, opts: BuildOptions, ckpt, board, slices, costs, d: int, weights, progress):
    """The exported learned device policy, written to device/policy.json, and its manifest entries."""
    from policy import embed

    trunk = tuple(int(np.prod(s.trunk.shape)) if s.trunk else 0 for s in slices)
    macs = tuple(c.stage.macs + c.head.macs for c in costs)
    chosen = embed.learned(
        opts.policy,
        ckpt,
        embed.Placed(macs, trunk, d, str(board.path), opts.link),
        [s.logits.scale for s in slices],
        opts.data_dir,
        opts.cache_dir,
        opts.policy_beta,
        opts.policy_episodes,
        weights,
        progress,
    )
    intpolicy.save(chosen.policy, out / "device" / "policy.json")
    return chosen.policy, {"kind": chosen.policy.kind, "device": "device/policy.json", **chosen.summary}


def _tensor(t) -> dict:
    return {"shape": list(t.shape), "scale": t.scale, "zero_point": t.zero_point}
