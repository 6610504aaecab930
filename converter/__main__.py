"""``python -m converter build ...`` and ``python -m converter policy train|compare ...``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from contracts.boards import BoardError, available
from converter import quiet
from converter.build import BuildOptions, run
from converter.errors import ConvertError
from earlyexit.checkpoint import CheckpointError
from earlyexit.console import add_progress_option
from earlyexit.data import DataError
from policy import commands as policy_commands
from policy.class_weights import add_class_weights_option


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m converter", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="int8 slices, tier placement, firmware sources, edge bundle, report")
    b.add_argument(
        "--board",
        required=True,
        help=f"board profile: a name in boards/ ({', '.join(available())}) or your own FILE.toml (docs/boards.md)",
    )
    b.add_argument("--link", help="the board's link up to the edge (default: its profile's first, e.g. usb-serial)")
    b.add_argument("--model", default="fashion-mnist", help="bundled model name or checkpoint (default %(default)s)")
    b.add_argument("--data-dir", help="the model's dataset (calibration + evaluation); default: bundled samples")
    b.add_argument("--device-slices", type=int, help="force this many slices onto the device")
    b.add_argument(
        "--allow-empty-device",
        action="store_true",
        help="when no slice fits the device, write an edge-only bundle instead of stopping with an error",
    )
    b.add_argument("--out", type=Path, help="output folder (default build/<board>)")
    b.add_argument("--cache-dir", type=Path, default=Path("build/cache"), help="conversion cache (default %(default)s)")
    b.add_argument("--eval-samples", type=int, help="verify on N test samples drawn at random (seeded)")
    b.add_argument("--thresholds", type=float, nargs="+", help="confidence threshold per exit (default 0.9 each)")
    b.add_argument(
        "--runtime", choices=("tflm", "native"), default="tflm", help="device inference (default %(default)s)"
    )
    b.add_argument(
        "--policy",
        default="threshold",
        help="device policy: threshold (default), dqn, tabular (learned here) or a `policy train --out` FILE",
    )
    b.add_argument("--policy-beta", type=float, help="beta for --policy dqn|tabular (default: calibrated)")
    b.add_argument("--policy-episodes", type=int, default=10_000, help="episodes for --policy dqn|tabular")
    add_class_weights_option(b, "--policy-class-weights")
    add_progress_option(b)
    b.add_argument("--verbose", action="store_true", help="let TensorFlow's, absl's and onnx2tf's own log through")
    b.set_defaults(func=_build)
    policy_commands.add_parser(sub)
    return p


def _build(args: argparse.Namespace) -> None:
    quiet.set_verbose(args.verbose)
    run(
        BuildOptions(
            board=args.board,
            link=args.link,
            model=args.model,
            data_dir=args.data_dir,
            device_slices=args.device_slices,
            out=args.out,
            cache_dir=args.cache_dir,
            eval_samples=args.eval_samples,
            thresholds=tuple(args.thresholds) if args.thresholds else None,
            policy=args.policy,
            policy_beta=args.policy_beta,
            policy_episodes=args.policy_episodes,
            policy_class_weights=args.policy_class_weights,
            runtime=args.runtime,
            allow_empty_device=args.allow_empty_device,
        ),
        progress=args.progress,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.func(args)
    except (ConvertError, BoardError, CheckpointError, DataError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
