"""``python -m earlyexit train|eval|traces``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from earlyexit import checkpoint, data, traces
from earlyexit.arch import ArchConfig
from earlyexit.model import EarlyExitNet
from earlyexit.profile import block_costs, exit_costs
from earlyexit.train import PRESETS, config_for, train
from earlyexit.zoo import ARCHS, build_arch


def _arch_for(name_or_file: str, ds: data.Dataset) -> ArchConfig:
    path = Path(name_or_file)
    if path.suffix == ".json" and path.is_file():
        try:
            return ArchConfig.from_dict(json.loads(path.read_text()))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
    h, w, c = ds.x.shape[1:]
    return build_arch(name_or_file, in_channels=c, input_size=h, num_classes=len(ds.classes))


def cmd_train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads) if args.threads else None
    train_ds = data.load(args.dataset, "train", args.data_dir, args.val_size)
    val_ds = data.load(args.dataset, "val", args.data_dir, args.val_size) if args.val_size else None
    arch = _arch_for(args.arch, train_ds)
    cfg = config_for(
        args.preset,
        args.dataset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        exit_weights=tuple(args.exit_weights) if args.exit_weights else None,
    )
    torch.manual_seed(cfg.seed)
    net = EarlyExitNet(arch)
    print(
        f"training {arch.name} on {args.dataset} ({len(train_ds)} train, {len(val_ds) if val_ds else 0} val), "
        f"preset {cfg.preset}, {cfg.epochs} epochs, {torch.get_num_threads()} threads"
    )
    t0 = time.perf_counter()
    train(net, train_ds, val_ds, cfg, args.out, tensorboard=args.tensorboard, progress=not args.quiet)
    rows = json.loads(Path(args.out).with_suffix(".metrics.json").read_text())
    print(
        f"wrote {args.out} ({time.perf_counter() - t0:.0f} s this run, {rows[-1]['seconds']:.0f} s of training in all)"
    )


def _print_table(rows: list[dict], costs: list) -> None:
    print(f"{'exit':>4} {'cum. MACs':>12} {'cum. params':>12} {'int8 KB':>8} {'loss':>8} {'accuracy':>9}")
    for row, c in zip(rows, costs):
        print(
            f"{row['exit']:>4} {row['macs']:>12,} {row['params']:>12,} {c.cumulative_int8_weight_bytes / 1024:>8.1f} "
            f"{row['loss']:>8.4f} {100 * row['accuracy']:>8.2f}%"
        )


def _load_split(ckpt: checkpoint.Checkpoint, args: argparse.Namespace) -> data.Dataset:
    name = args.dataset or ckpt.dataset
    ds = data.load(name, args.split, args.data_dir, args.val_size)
    arch = ckpt.arch
    takes = (arch.input_size, arch.input_size, arch.in_channels)
    if ds.x.shape[1:] != takes or len(ds.classes) != arch.num_classes:
        raise ValueError(
            f"--dataset {name} does not fit model {args.model}: its images are {'x'.join(map(str, ds.x.shape[1:]))} "
            f"in {len(ds.classes)} classes, the model ({arch.name}, trained on {ckpt.dataset}) takes "
            f"{'x'.join(map(str, takes))} in {arch.num_classes}; drop --dataset to use the model's own, or pass a "
            f"model trained on {name}"
        )
    return ds


def cmd_eval(args: argparse.Namespace) -> None:
    ckpt = checkpoint.load(args.model)
    ds = _load_split(ckpt, args)
    tr = traces.collect(ckpt, ds, progress=not args.quiet)
    costs = exit_costs(ckpt.net)
    rows = [dict(row, params=c.cumulative_params) for row, c in zip(traces.exit_table(tr), costs)]
    print(f"{ckpt.arch.name} on {ds.name}/{ds.split} ({len(ds)} samples), model {tr.model_hash[:12]}")
    _print_table(rows, costs)
    if args.json:
        result = {"exits": rows, "dataset": ds.name, "split": ds.split, "samples": len(ds), "model_hash": tr.model_hash}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


def cmd_traces(args: argparse.Namespace) -> None:
    ckpt = checkpoint.load(args.model)
    ds = _load_split(ckpt, args)
    tr = traces.collect(ckpt, ds, progress=not args.quiet)
    traces.save(tr, args.out)
    acc = " ".join(f"{100 * r['accuracy']:.2f}%" for r in traces.exit_table(tr))
    print(f"wrote {args.out}: {len(ds)} samples x {tr.num_exits} exits (accuracy per exit: {acc})")


def cmd_profile(args: argparse.Namespace) -> None:
    if Path(args.model_or_arch).is_file() or args.model_or_arch in checkpoint.bundled_models():
        net = checkpoint.load(args.model_or_arch).net
    else:
        net = EarlyExitNet(build_arch(args.model_or_arch))
    arch = net.arch
    print(f"{arch.name}: input {arch.in_channels}x{arch.input_size}x{arch.input_size}, {arch.num_classes} classes")
    print(f"{'block':>5} {'conv channels':<22} {'pool':>4} {'MACs':>12} {'params':>10} {'output':>14}")
    for b, (spec, c) in enumerate(zip(arch.blocks, block_costs(net))):
        channels = ",".join(str(ch) for ch in spec.channels)
        shape = "x".join(str(d) for d in c.output_shape)
        print(f"{b + 1:>5} {channels:<22} {'yes' if spec.pool else 'no':>4} {c.macs:>12,} {c.params:>10,} {shape:>14}")
    costs = exit_costs(net)
    print(
        f"\n{'exit':>4} {'after block':>11} {'head MACs':>10} {'cum. MACs':>12} {'cum. params':>12} "
        f"{'int8 KB':>8} {'peak act. KB':>12}"
    )
    for k, c in enumerate(costs):
        print(
            f"{k + 1:>4} {arch.exits[k] + 1:>11} {c.head.macs:>10,} {c.cumulative_macs:>12,} "
            f"{c.cumulative_params:>12,} {c.cumulative_int8_weight_bytes / 1024:>8.1f} "
            f"{c.peak_activation_bytes / 1024:>12.1f}"
        )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m earlyexit", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser, dataset_required: bool) -> None:
        sp.add_argument(
            "--dataset",
            choices=data.DATASETS,
            required=dataset_required,
            default=None,
            help="dataset (default: the model's own)" if not dataset_required else None,
        )
        sp.add_argument("--data-dir", help="where the dataset lives (see docs/data.md for the layouts read)")
        sp.add_argument(
            "--val-size",
            type=int,
            default=data.DEFAULT_VAL_SIZE,
            help="training images held out for validation (default %(default)s)",
        )
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    t = sub.add_parser("train", help="train an early-exit network jointly on all exits")
    t.add_argument("--arch", required=True, help=f"{', '.join(ARCHS)} or an architecture .json file")
    common(t, dataset_required=True)
    t.add_argument("--out", required=True, help="checkpoint file to write (resumes from OUT.resume if present)")
    t.add_argument("--preset", choices=sorted(PRESETS), default="fast")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--exit-weights", type=float, nargs="+", help="loss weight per exit (default: all 1)")
    t.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    t.add_argument("--tensorboard", help="also log to this TensorBoard directory")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="per-exit loss and accuracy table")
    e.add_argument("--model", required=True, help="bundled model name or checkpoint file")
    common(e, dataset_required=False)
    e.add_argument("--split", choices=data.SPLITS, default="test")
    e.add_argument("--json", help="also write the table as JSON here")
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("traces", help="per-sample, per-exit outputs: the policy's training data")
    r.add_argument("--model", required=True, help="bundled model name or checkpoint file")
    common(r, dataset_required=False)
    r.add_argument("--split", choices=data.SPLITS, required=True)
    r.add_argument("--out", required=True, help="trace file (.npz) to write")
    r.set_defaults(func=cmd_traces)

    f = sub.add_parser("profile", help="MACs, parameters and int8 sizes per block and per exit")
    f.add_argument("model_or_arch", help=f"bundled model, checkpoint file, or architecture ({', '.join(ARCHS)})")
    f.set_defaults(func=cmd_profile)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        args.func(args)
    except (data.DataError, checkpoint.CheckpointError, ValueError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
