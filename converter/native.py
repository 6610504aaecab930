"""``--runtime native``: the device slices as interpreter-free C99 (docs/native.md).

Writes ``ee_native.h`` / ``ee_native.c`` (every slice as a fixed sequence of calls into
firmware/lib/eenative, constants in flash, one static arena planned by converter/native_plan.py)
and ``ee_model_data.c``, which replaces the TFLM build's ``ee_model_data.cc``: the same slice
table and input lookup table, without the flatbuffers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converter.codegen import FirmwareModel
from converter.native_graph import NativeGraph, lower
from converter.native_plan import Location, Plan, plan

# kind -> (C struct, C function, takes a scratch pointer)
_KERNELS = {
    "conv": ("een_conv", "een_conv2d_s8", True),
    "depthwise": ("een_depthwise", "een_depthwise_s8", False),
    "fc": ("een_fc", "een_fc_s8", True),
    "max_pool": ("een_pool", "een_max_pool_s8", False),
    "avg_pool": ("een_pool", "een_avg_pool_s8", False),
    "pad": ("een_pad", "een_pad_s8", False),
    "mean": ("een_mean", "een_mean_s8", False),
    "add": ("een_add", "een_add_s8", True),
    "softmax": ("een_softmax", "een_softmax_s8", False),
}
_C_TYPES = {np.dtype(np.int8): "int8_t", np.dtype(np.int32): "int32_t"}


@dataclass(frozen=True)
class NativeSlice:
    """One device slice compiled for the native backend."""

    graph: NativeGraph
    plan: Plan
    logits: int  # tensor id
    trunk: int | None


@dataclass(frozen=True)
class NativeSummary:
    """What the manifest records about a native build."""

    arena_bytes: int
    const_bytes: int  # weights, biases, multipliers, shifts and op descriptions
    arena_per_slice: list[int]

    def to_json(self) -> dict:
        return {
            "arena_bytes": self.arena_bytes,
            "const_bytes": self.const_bytes,
            "arena_per_slice": self.arena_per_slice,
        }


def compile_slice(data: bytes, name: str) -> NativeSlice:
    """Lower and plan one int8 slice (its outputs: logits of rank 2, optionally a rank-4 trunk)."""
    graph = lower(data, name)
    logits = [t for t in graph.outputs if len(graph.tensors[t].shape) == 2]
    trunk = [t for t in graph.outputs if len(graph.tensors[t].shape) == 4]
    external = {graph.input: "input", **{t: "logits" for t in logits}, **{t: "trunk" for t in trunk}}
    return NativeSlice(graph, plan(graph, external), logits[0], trunk[0] if trunk else None)


def _ints_c(values: np.ndarray, per_line: int = 24) -> str:
    v = [str(int(x)) for x in values.ravel()]
    return ",\n  ".join(", ".join(v[i : i + per_line]) for i in range(0, len(v), per_line))


def _initializer(fields: dict[str, object], arrays: dict[str, str]) -> str:
    parts = []
    for key, value in fields.items():
        if isinstance(value, dict):
            value = "{" + ", ".join(str(v) for v in value.values()) + "}"
        parts.append(f".{key} = {value}")
    parts += [f".{key} = {sym}" for key, sym in arrays.items()]
    return "{" + ", ".join(parts) + "}"


def _pointer(loc: Location, cast: str = "") -> str:
    if loc.base == "arena":
        return f"{cast}(ee_native_bytes + {loc.offset})"
    return loc.base


def _slice_c(k: int, s: NativeSlice) -> tuple[str, str, int]:
    """(constant definitions, the slice's function, bytes of constants) of device slice k (0-based)."""
    defs, body, const_bytes = [], [], 0
    p = f"ee_s{k + 1}"
    for n, op in enumerate(s.graph.ops):
        out = _pointer(s.plan.tensors[op.output])
        ins = [_pointer(s.plan.tensors[i]) for i in op.inputs]
        if op.kind == "alias":
            if n in s.plan.copies:
                body.append(f"  memcpy({out}, {ins[0]}, {s.graph.tensors[op.output].size});")
            continue
        struct, fn, has_scratch = _KERNELS[op.kind]
        syms = {}
        for key, arr in op.arrays.items():
            sym = f"{p}_op{n}_{key}"
            defs.append(f"static const {_C_TYPES[arr.dtype]} {sym}[{arr.size}] = {{\n  {_ints_c(arr)}\n}};\n")
            syms[key] = sym
            const_bytes += arr.nbytes
        init = _initializer(op.fields, syms)
        defs.append(f"/* {op.kind}: {op.layer} */\nstatic const {struct} {p}_op{n} = {init};\n")
        args = [f"&{p}_op{n}", *ins, out]
        if has_scratch:
            args.append(_pointer(s.plan.scratch[n], "(void *)") if n in s.plan.scratch else "NULL")
        body.append(f"  {fn}({', '.join(args)});")
        body.append(f"  EE_NATIVE_OP_DONE({k}, {n});")
    unused = "" if s.trunk is not None else "  (void)trunk;\n"
    fn_text = (
        f"static void {p}_run(const int8_t *input, int8_t *logits, int8_t *trunk) {{\n{unused}"
        + "\n".join(body)
        + "\n}\n"
    )
    return "".join(defs), fn_text, const_bytes


def header(model: FirmwareModel, arena: int, banner: str) -> str:
    return f"""{banner}#ifndef EE_NATIVE_H
#define EE_NATIVE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#define EE_NATIVE_SLICES {len(model.slices)}
/** The one static arena every device slice's activations and scratch share (RAM). */
#define EE_NATIVE_ARENA_BYTES {arena}

/** Rank of each slice's trunk output, batch included (4, NHWC); 0 for the model's last slice. */
extern const uint8_t ee_native_trunk_rank[EE_NATIVE_SLICES];
/** Its shape, (1, H, W, C). */
extern const uint16_t ee_native_trunk_dims[EE_NATIVE_SLICES][4];

/**
 * Run device slice `slice` (0-based) on `input` (the quantized image for slice 0, else the previous
 * slice's trunk): writes its int8 logits and, except for the model's last slice, its int8 trunk.
 * `input` must not overlap `logits` or `trunk`. Returns 0, or -1 for a bad slice or a NULL buffer.
 * Not re-entrant: all slices share one static arena.
 */
int ee_native_run_slice(int slice, const int8_t *input, int8_t *logits, int8_t *trunk);

#ifdef __cplusplus
}}
#endif

#endif /* EE_NATIVE_H */
"""


def source(model: FirmwareModel, slices: list[NativeSlice], arena: int, banner: str) -> tuple[str, int]:
    """ee_native.c and its bytes of constants."""
    parts, fns, const_bytes = [], [], 0
    for k, s in enumerate(slices):
        defs, fn, n = _slice_c(k, s)
        parts.append(f"/* ---- slice {k + 1} ---- */\n{defs}")
        fns.append(fn)
        const_bytes += n
    ranks, dims, cases = [], [], []
    for k, s in enumerate(slices):
        shape = list(s.graph.tensors[s.trunk].shape) if s.trunk is not None else [0, 0, 0, 0]
        ranks.append(str(len(shape) if s.trunk is not None else 0))
        dims.append("{" + ", ".join(str(d) for d in shape) + "}")
        need = "" if s.trunk is None else " || trunk == NULL"
        cases.append(
            f"    case {k}:\n      if (logits == NULL{need}) {{\n        return -1;\n      }}\n"
            f"      ee_s{k + 1}_run(input, logits, trunk);\n      return 0;"
        )
    text = f"""{banner}#include "ee_native.h"

#include <stddef.h>
#include <string.h>

#include "eenative.h"

#ifndef EE_NATIVE_OP_DONE
/** Profiling hook, called after every kernel with (slice, op): define it to measure. */
#define EE_NATIVE_OP_DONE(slice, op)
#endif

static int32_t ee_native_arena[(EE_NATIVE_ARENA_BYTES + 3) / 4 + 1];
#define ee_native_bytes ((int8_t *)ee_native_arena)

{"".join(parts)}
{"".join(fns)}
const uint8_t ee_native_trunk_rank[EE_NATIVE_SLICES] = {{{", ".join(ranks)}}};
const uint16_t ee_native_trunk_dims[EE_NATIVE_SLICES][4] = {{{", ".join(dims)}}};

int ee_native_run_slice(int slice, const int8_t *input, int8_t *logits, int8_t *trunk) {{
  if (input == NULL) {{
    return -1;
  }}
  switch (slice) {{
{chr(10).join(cases)}
    default:
      return -1;
  }}
}}
"""
    return text, const_bytes


def model_data(model: FirmwareModel, banner: str) -> str:
    """ee_model_data.c: ee_slices[] (no flatbuffers) and ee_input_lut, in C99."""
    rows = []
    for s in model.slices:
        t = s.trunk
        trunk_bytes = int(np.prod(t.shape)) if t else 0
        rows.append(
            f"  {{NULL, 0u, {s.logits.scale!r}f, {s.logits.zero_point}, "
            f"{trunk_bytes}u, {t.scale if t else 0.0!r}f, {t.zero_point if t else 0}}},"
        )
    lut = ",\n".join("  {" + _ints_c(row, 256) + "}" for row in model.input_lut)
    return f"""{banner}#include <stddef.h>
#include <stdint.h>

#include "ee_model.h"

const ee_slice_info ee_slices[EE_DEVICE_SLICES] = {{
{chr(10).join(rows)}
}};

const int8_t ee_input_lut[EE_INPUT_C][256] = {{
{lut}
}};
"""


def write(model: FirmwareModel, out_dir: Path) -> NativeSummary:
    """Compile the device slices into ``out_dir`` (next to codegen's files, replacing ee_model_data.cc)."""
    from converter.codegen import _banner

    banner = _banner(model)
    slices = [compile_slice(s.tflite, f"slice {s.index + 1}") for s in model.slices]
    arena = max((s.plan.arena_bytes for s in slices), default=0)
    text, const_bytes = source(model, slices, arena, banner)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ee_native.h").write_text(header(model, arena, banner))
    (out_dir / "ee_native.c").write_text(text)
    (out_dir / "ee_model_data.c").write_text(model_data(model, banner))
    (out_dir / "ee_model_data.cc").unlink(missing_ok=True)
    return NativeSummary(arena, const_bytes, [s.plan.arena_bytes for s in slices])
