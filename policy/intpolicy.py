"""Learned device policies as the microcontroller runs them: integer features, mask and decision.

This module is the Python twin of the generated ``ee_policy.c`` for ``dqn`` and ``tabular``
policies (docs/policy.md, "Export"): every quantity is an integer computed exactly as the C
does, so the two decide identically. From a :class:`~policy.threshold.DeviceState` it forms

- the exit's prediction summary from its int8 logits through the exit's ``exp`` table
  (:func:`policy.threshold.exp_tables`): top probability, top-1 minus top-2 margin and
  normalized entropy, in Q12 (4096 = 1.0);
- the exit index, the tier (the device), energy and time spent, bandwidth, deadline left, the
  edge's queueing wait and the battery pace in Q12, normalized like the training environment's
  observation (``policy/env.py``) and clamped to [0, 8);
- the feasibility mask: STAY while a device slice is left and its estimated time and energy
  fit; OFFLOAD only at the last device exit (the edge continues from there), when allowed, and
  when sending, the edge's wait, its next slice and the answer's way back fit the deadline left.

A ``dqn`` policy is an int8 MLP (per-tensor weight scales, int32 biases, int8 ReLU
activations requantized by a multiplier and shift); a ``tabular`` one is an int16 Q-table over
(confidence decile, exit, bandwidth band, time-left quarter). Both pick the first maximal
allowed action. Files: JSON (:func:`save`, :func:`load`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from contracts.protocol import RESULT_FRAME_BYTES
from policy.threshold import EXIT, OFFLOAD, ONE, STAY, DeviceState, exp_tables

FORMAT_VERSION = 1
Q = 4096  # features in Q12
FEATURE_MAX = 8 * Q - 1
MUL_SHIFT = 24  # energy, time and bandwidth: (x * mul) >> 24
MUL_ONE = 1 << MUL_SHIFT
LN2_Q16 = 45426  # round(ln 2 * 2^16)
LOG2_TABLE = tuple(round(math.log2(1 + i / 16) * 65536) for i in range(17))  # log2(1 + i/16) in Q16


@dataclass(frozen=True)
class Features:
    """Integer constants turning a device state into the Q12 observation."""

    num_exits: int
    num_tiers: int
    num_classes: int
    logit_scales: tuple[float, ...]  # per exit (int8 logits)
    scale_q16: tuple[int, ...]  # round(2^16 * scale) per exit
    entropy_mul: int  # round(4096 / ln C): Q16 nats -> Q12 normalized entropy (after >> 16)
    energy_mul: int  # Q12 << 24 per uJ: 1 / energy unit
    time_mul: int  # Q12 << 24 per us: 1 / training deadline
    bandwidth_mul: int  # Q12 << 24 per bit/s: 1 / nominal
    nominal_bps: int  # the device link's nominal bandwidth (the board profile)
    deadline_us: int  # the training deadline

    @classmethod
    def build(
        cls,
        logit_scales: list[float],
        num_classes: int,
        num_tiers: int,
        energy_unit_uj: float,
        deadline_us: float,
        nominal_bps: float,
    ) -> Features:
        e = len(logit_scales)
        return cls(
            e,
            num_tiers,
            num_classes,
            tuple(float(s) for s in logit_scales),
            tuple(round(s * 65536) for s in logit_scales),
            round(Q / math.log(num_classes)),
            round(Q * MUL_ONE / energy_unit_uj),
            round(Q * MUL_ONE / deadline_us),
            round(Q * MUL_ONE / nominal_bps),
            round(nominal_bps),
            round(deadline_us),
        )

    @property
    def size(self) -> int:
        return 3 + 1 + self.num_tiers + 6


@dataclass(frozen=True)
class Limits:
    """Cost-model estimates (integers) for the feasibility mask."""

    device_exits: int
    device_us: tuple[int, ...]  # per device slice
    device_uj: tuple[int, ...]
    edge_us: int  # the edge's first slice (slice device_exits + 1); 0 when none
    offload_bytes: int  # the OFFLOAD frame at the last device exit
    latency_us: int  # the device link's latency
    offload_uj: int  # device energy of that OFFLOAD
    energy_budget_uj: int  # NO_BUDGET: none


def _ceil_div(a: int, b: int) -> int:
    return (a + b - 1) // b


def mask(lim: Limits, f: Features, s: DeviceState) -> list[bool]:
    """Allowed STAY, EXIT, OFFLOAD (the C ``allowed``)."""
    k, left, bw = s.exit, s.deadline_left_us, s.bandwidth_bps or f.nominal_bps
    ok = [False, True, False]
    if k + 1 < lim.device_exits:
        ok[STAY] = lim.device_us[k + 1] <= left and s.energy_spent_uj + lim.device_uj[k + 1] <= lim.energy_budget_uj
    if s.can_offload and k == lim.device_exits - 1 and k + 1 < f.num_exits:
        send = lim.latency_us + _ceil_div(8_000_000 * lim.offload_bytes, bw)
        back = lim.latency_us + _ceil_div(8_000_000 * RESULT_FRAME_BYTES, bw)
        ok[OFFLOAD] = (
            send + s.edge_wait_us + lim.edge_us + back <= left
            and s.energy_spent_uj + lim.offload_uj <= lim.energy_budget_uj
        )
    return ok


def ln_q16(x: int) -> int:
    """ln(x / 2^15) in Q16 for x >= 2^15: leading bit plus a 16-segment log2 table."""
    n = x.bit_length() - 1
    frac = ((x << 16) >> n) - 65536
    i, rem = frac >> 12, frac & 4095
    log2 = ((n - 15) << 16) + LOG2_TABLE[i] + (((LOG2_TABLE[i + 1] - LOG2_TABLE[i]) * rem) >> 12)
    return (log2 * LN2_Q16) >> 16


def observation(f: Features, table: np.ndarray, s: DeviceState) -> list[int]:
    """The Q12 observation (the C ``features``); ``table`` is exit ``s.exit``'s exp table."""
    logits = [int(v) for v in s.logits]
    top_j = max(range(len(logits)), key=lambda j: (logits[j], -j))  # the first maximum
    top = logits[top_j]
    total = second = weighted = 0
    for j, v in enumerate(logits):
        e = int(table[top - v])
        total += e
        weighted += e * (top - v)
        if j != top_j:
            second = max(second, e)
    entropy = (weighted * f.scale_q16[s.exit]) // total + ln_q16(total)
    tier = [Q] + [0] * (f.num_tiers - 1)
    raw = [
        (ONE << 12) // total,
        ((ONE - second) << 12) // total,
        (entropy * f.entropy_mul) >> 16,
        (s.exit * Q) // (f.num_exits - 1),
        *tier,
        (s.energy_spent_uj * f.energy_mul) >> MUL_SHIFT,
        (s.time_spent_us * f.time_mul) >> MUL_SHIFT,
        ((s.bandwidth_bps or f.nominal_bps) * f.bandwidth_mul) >> MUL_SHIFT,
        (s.deadline_left_us * f.time_mul) >> MUL_SHIFT,
        (s.edge_wait_us * f.time_mul) >> MUL_SHIFT,
        (s.battery_pace_uj * f.energy_mul) >> MUL_SHIFT,
    ]
    return [min(max(v, 0), FEATURE_MAX) for v in raw]


def _pick(q: list[int], allowed: list[bool]) -> int:
    """The first maximal allowed action (EXIT is always allowed)."""
    best = -1
    for a in (STAY, EXIT, OFFLOAD):
        if allowed[a] and (best < 0 or q[a] > q[best]):
            best = a
    return best


@dataclass(frozen=True)
class Layer:
    """int8 weights (out, in), int32 bias; hidden layers requantize by ``(acc * mul + round) >> shift``."""

    weights: np.ndarray
    bias: np.ndarray
    mul: int = 0  # 0: the output layer
    shift: int = 0


@dataclass(frozen=True)
class LearnedPolicy:
    """An exported ``dqn`` (``layers``) or ``tabular`` (``table``) device policy."""

    kind: str
    features: Features
    limits: Limits
    layers: tuple[Layer, ...] = ()
    table: np.ndarray | None = None  # int16 (confidence, device exit, bandwidth, time, 3)

    @cached_property
    def tables(self) -> np.ndarray:
        return exp_tables(list(self.features.logit_scales))

    @property
    def device_exits(self) -> int:
        return self.limits.device_exits

    def confidence_q15(self, k: int, logits: np.ndarray) -> int:
        """Top softmax probability at exit ``k`` in Q15, as :class:`ThresholdPolicy` computes it."""
        gaps = int(logits.max()) - logits.astype(np.int32)
        return min(ONE - 1, (ONE << 15) // int(self.tables[k][gaps].astype(np.uint32).sum()))

    def allowed(self, s: DeviceState) -> list[bool]:
        return mask(self.limits, self.features, s)

    def q_values(self, s: DeviceState) -> list[int]:
        """The integer action values (DQN: output accumulators; tabular: the table row)."""
        if self.kind == "dqn":
            a = np.array(observation(self.features, self.tables[s.exit], s), dtype=np.int64)
            for layer in self.layers:
                acc = layer.weights.astype(np.int64) @ a + layer.bias.astype(np.int64)
                if not layer.mul:
                    return [int(v) for v in acc]
                a = np.minimum((np.maximum(acc, 0) * layer.mul + (1 << (layer.shift - 1))) >> layer.shift, 127)
        return [int(v) for v in self.table[self.table_index(s)]]

    def table_index(self, s: DeviceState) -> tuple[int, int, int, int]:
        """(confidence bin, exit, bandwidth bin, time-left bin) of a tabular policy."""
        conf_bins, _, bw_bins, time_bins, _ = self.table.shape
        gaps = int(s.logits.max()) - s.logits.astype(np.int32)
        top_q15 = (ONE << 15) // int(self.tables[s.exit][gaps].astype(np.uint32).sum())
        ratio = max(1, ((s.bandwidth_bps or self.features.nominal_bps) * 8) // self.features.nominal_bps)
        return (
            min(conf_bins - 1, (top_q15 * conf_bins) >> 15),
            s.exit,
            min(bw_bins - 1, ratio.bit_length() - 1),
            min(time_bins - 1, (s.deadline_left_us * time_bins) // self.features.deadline_us),
        )

    def decide_device(self, s: DeviceState) -> int:
        """STAY, EXIT or OFFLOAD at device exit ``s.exit`` (the C ``ee_policy_decide``)."""
        if s.exit >= self.device_exits:
            return EXIT
        return _pick(self.q_values(s), self.allowed(s))


def save(policy: LearnedPolicy, path: Path) -> None:
    doc = {
        "format_version": FORMAT_VERSION,
        "kind": policy.kind,
        "features": asdict(policy.features),
        "limits": asdict(policy.limits),
        "layers": [
            {"weights": ly.weights.tolist(), "bias": ly.bias.tolist(), "mul": ly.mul, "shift": ly.shift}
            for ly in policy.layers
        ],
        "table": policy.table.tolist() if policy.table is not None else None,
    }
    Path(path).write_text(json.dumps(doc) + "\n")


def load(path: Path) -> LearnedPolicy:
    """Read an exported policy written by :func:`save`; ValueError names what is wrong."""
    try:
        doc = json.loads(Path(path).read_text())
        if doc.get("format_version") != FORMAT_VERSION or doc.get("kind") not in ("dqn", "tabular"):
            raise ValueError(f"format {doc.get('format_version')!r} kind {doc.get('kind')!r}")
        feats = doc["features"]
        features = Features(
            **{**feats, "logit_scales": tuple(feats["logit_scales"]), "scale_q16": tuple(feats["scale_q16"])}
        )
        lim = doc["limits"]
        limits = Limits(**{**lim, "device_us": tuple(lim["device_us"]), "device_uj": tuple(lim["device_uj"])})
        layers = tuple(
            Layer(np.array(ly["weights"], np.int8), np.array(ly["bias"], np.int32), ly["mul"], ly["shift"])
            for ly in doc["layers"]
        )
        table = np.array(doc["table"], np.int16) if doc["table"] is not None else None
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"{path}: not an exported device policy ({err}); rebuild with `python -m converter build --policy ...`"
        ) from None
    return LearnedPolicy(doc["kind"], features, limits, layers, table)
