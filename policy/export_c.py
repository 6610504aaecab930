"""C99 sources of the device policy: ``ee_policy.h`` (one API for every kind) and ``ee_policy.c``.

The C of a learned policy mirrors :mod:`policy.intpolicy` line by line; the threshold
policy mirrors :class:`policy.threshold.ThresholdPolicy`. Every kind shares the per-exit
``exp`` tables (confidence in Q15, the prediction summary).
"""

from __future__ import annotations

import numpy as np

from contracts.protocol import RESULT_FRAME_BYTES
from policy.intpolicy import LOG2_TABLE, LearnedPolicy, Q
from policy.threshold import ThresholdPolicy


def header(banner: str) -> str:
    return f"""{banner}#ifndef EE_POLICY_H
#define EE_POLICY_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

enum {{ EE_STAY = 0, EE_EXIT = 1, EE_OFFLOAD = 2 }};

/** What the device knows at one of its exits. */
typedef struct {{
  int exit_index;            /**< the exit just computed, 0-based */
  const int8_t *logits;      /**< its int8 logits */
  int num_classes;           /**< how many */
  uint32_t time_spent_us;    /**< since the request arrived */
  uint32_t energy_spent_uj;  /**< device energy since the request arrived */
  uint32_t deadline_left_us; /**< time left before the device must hold the answer */
  uint32_t bandwidth_bps;    /**< the device link's bandwidth; 0: the board profile's nominal figure */
  uint8_t can_offload;       /**< the edge accepted this model and continues after the last device exit */
  uint32_t edge_wait_us;     /**< the edge's queueing wait; 0: unknown or free */
  uint32_t battery_pace_uj;  /**< battery left per request left before recharge; UINT32_MAX: no limit */
}} ee_policy_state;

/** EE_STAY, EE_EXIT or EE_OFFLOAD; bounded time, no allocation. */
int ee_policy_decide(const ee_policy_state *state);

/** Top softmax probability at exit `exit_index` in Q15 (32767 = 1.0), integer-only. */
uint16_t ee_policy_confidence_q15(int exit_index, const int8_t *logits, int num_classes);

#ifdef __cplusplus
}}
#endif

#endif /* EE_POLICY_H */
"""


def _rows(table: np.ndarray) -> str:
    return ",\n".join("  {" + ", ".join(str(int(v)) for v in row) + "}" for row in table)


def _flat(values: np.ndarray, suffix: str = "") -> str:
    items = [f"{int(v)}{suffix}" for v in np.asarray(values).ravel()]
    return ",\n  ".join(", ".join(items[i : i + 16]) for i in range(0, len(items), 16))


def _common(tables: np.ndarray, num_exits: int, device_exits: int) -> str:
    return f"""#include "ee_policy.h"

#define EE_POLICY_EXITS {num_exits}
#define EE_POLICY_DEVICE_EXITS {device_exits}

/* round(2^15 * exp(-logit_scale_k * d)) for d = 0..255, per exit. */
static const uint16_t ee_exp_table[EE_POLICY_EXITS][256] = {{
{_rows(tables)}
}};

/* sum_j exp(-scale * (max - logit_j)) in Q15: 32768 / sum is the top softmax probability. */
static uint32_t exp_sum(int exit_index, const int8_t *logits, int num_classes) {{
  int top = logits[0];
  uint32_t sum = 0;
  int j;
  for (j = 1; j < num_classes; ++j) {{
    if (logits[j] > top) {{
      top = logits[j];
    }}
  }}
  for (j = 0; j < num_classes; ++j) {{
    sum += ee_exp_table[exit_index][top - logits[j]];
  }}
  return sum;
}}

uint16_t ee_policy_confidence_q15(int exit_index, const int8_t *logits, int num_classes) {{
  uint32_t q = (UINT32_C(1) << 30) / exp_sum(exit_index, logits, num_classes);
  return (uint16_t)(q > 32767u ? 32767u : q);
}}
"""


def _threshold(p: ThresholdPolicy) -> str:
    limits = ", ".join(f"{int(v)}u" for v in p.limits)
    thresholds = ", ".join(f"{t:g}" for t in p.thresholds)
    return f"""/* Confidence thresholds per exit: {thresholds}. See policy/threshold.py. */
{_common(p.exp_tables, p.num_exits, p.device_exits)}
static const uint32_t ee_limit[EE_POLICY_EXITS] = {{{limits}}};

int ee_policy_decide(const ee_policy_state *state) {{
  int k = state->exit_index;
  if (k < 0 || k >= EE_POLICY_EXITS - 1) {{
    return EE_EXIT;
  }}
  if (exp_sum(k, state->logits, state->num_classes) <= ee_limit[k]) {{
    return EE_EXIT;
  }}
  return k == EE_POLICY_DEVICE_EXITS - 1 ? EE_OFFLOAD : EE_STAY;
}}
"""


def _mask(p: LearnedPolicy) -> str:
    f, lim = p.features, p.limits
    return f"""#define EE_NOMINAL_BPS {f.nominal_bps}u
#define EE_DEADLINE_US {f.deadline_us}u
#define EE_EDGE_US {lim.edge_us}u
#define EE_OFFLOAD_BYTES {lim.offload_bytes}u
#define EE_LATENCY_US {lim.latency_us}u
#define EE_OFFLOAD_UJ {lim.offload_uj}u
#define EE_ENERGY_BUDGET_UJ {lim.energy_budget_uj}u
#define EE_RESULT_BYTES {RESULT_FRAME_BYTES}u

/* Cost-model estimates per device slice: time and device energy. */
static const uint32_t ee_device_us[EE_POLICY_DEVICE_EXITS] = {{{", ".join(f"{v}u" for v in lim.device_us)}}};
static const uint32_t ee_device_uj[EE_POLICY_DEVICE_EXITS] = {{{", ".join(f"{v}u" for v in lim.device_uj)}}};

static uint64_t ceil_div(uint64_t a, uint32_t b) {{ return (a + b - 1u) / b; }}

/* STAY while a device slice is left and fits; OFFLOAD at the last device exit when it fits. */
static void allowed(const ee_policy_state *s, uint32_t bw, uint8_t ok[3]) {{
  int k = s->exit_index;
  ok[EE_STAY] = 0;
  ok[EE_EXIT] = 1;
  ok[EE_OFFLOAD] = 0;
  if (k + 1 < EE_POLICY_DEVICE_EXITS) {{
    ok[EE_STAY] = ee_device_us[k + 1] <= s->deadline_left_us &&
                  (uint64_t)s->energy_spent_uj + ee_device_uj[k + 1] <= EE_ENERGY_BUDGET_UJ;
  }}
  if (s->can_offload && k == EE_POLICY_DEVICE_EXITS - 1 && k + 1 < EE_POLICY_EXITS) {{
    uint64_t send = EE_LATENCY_US + ceil_div(UINT64_C(8000000) * EE_OFFLOAD_BYTES, bw);
    uint64_t back = EE_LATENCY_US + ceil_div(UINT64_C(8000000) * EE_RESULT_BYTES, bw);
    ok[EE_OFFLOAD] = send + s->edge_wait_us + EE_EDGE_US + back <= s->deadline_left_us &&
                     (uint64_t)s->energy_spent_uj + EE_OFFLOAD_UJ <= EE_ENERGY_BUDGET_UJ;
  }}
}}

/* The first maximal allowed action (EXIT is always allowed). */
static int pick(const int32_t q[3], const uint8_t ok[3]) {{
  int a, best = -1;
  for (a = 0; a < 3; ++a) {{
    if (ok[a] && (best < 0 || q[a] > q[best])) {{
      best = a;
    }}
  }}
  return best;
}}
"""


def _features(p: LearnedPolicy) -> str:
    f = p.features
    tiers = "\n".join(f"  f[{4 + t}] = {Q if t == 0 else 0};" for t in range(f.num_tiers))
    n = 4 + f.num_tiers
    return f"""#define EE_FEATURES {f.size}
#define EE_FEATURE_MAX {8 * Q - 1}

static const uint32_t ee_scale_q16[EE_POLICY_EXITS] = {{{", ".join(f"{v}u" for v in f.scale_q16)}}};
/* log2(1 + i / 16) in Q16. */
static const uint32_t ee_log2_table[17] = {{{", ".join(f"{v}u" for v in LOG2_TABLE)}}};

/* ln(x / 2^15) in Q16 for x >= 2^15. */
static uint32_t ln_q16(uint32_t x) {{
  int n = 31;
  uint32_t frac, i, rem, log2;
  while (!(x >> n)) {{
    --n;
  }}
  frac = (uint32_t)((((uint64_t)x << 16) >> n) - 65536u);
  i = frac >> 12;
  rem = frac & 4095u;
  log2 = ((uint32_t)(n - 15) << 16) + ee_log2_table[i] + (((ee_log2_table[i + 1] - ee_log2_table[i]) * rem) >> 12);
  return (uint32_t)(((uint64_t)log2 * 45426u) >> 16);
}}

static int32_t clamp(uint64_t v) {{ return v > EE_FEATURE_MAX ? EE_FEATURE_MAX : (int32_t)v; }}

/* The Q12 observation: top probability, margin, normalized entropy, exit, tier, energy, time, bandwidth, left,
   edge wait, battery pace. */
static void features(const ee_policy_state *s, uint32_t bw, int32_t f[EE_FEATURES]) {{
  const uint16_t *table = ee_exp_table[s->exit_index];
  uint32_t total = 0, second = 0;
  uint64_t weighted = 0, entropy;
  int j, top = 0;
  for (j = 1; j < s->num_classes; ++j) {{
    if (s->logits[j] > s->logits[top]) {{
      top = j;
    }}
  }}
  for (j = 0; j < s->num_classes; ++j) {{
    uint32_t gap = (uint32_t)(s->logits[top] - s->logits[j]), e = table[gap];
    total += e;
    weighted += (uint64_t)e * gap;
    if (j != top && e > second) {{
      second = e;
    }}
  }}
  entropy = weighted * ee_scale_q16[s->exit_index] / total + ln_q16(total);
  f[0] = clamp((UINT64_C(32768) << 12) / total);
  f[1] = clamp(((uint64_t)(32768u - second) << 12) / total);
  f[2] = clamp((entropy * {f.entropy_mul}u) >> 16);
  f[3] = clamp((uint64_t)s->exit_index * {Q}u / (EE_POLICY_EXITS - 1));
{tiers}
  f[{n}] = clamp(((uint64_t)s->energy_spent_uj * {f.energy_mul}u) >> 24);
  f[{n + 1}] = clamp(((uint64_t)s->time_spent_us * {f.time_mul}u) >> 24);
  f[{n + 2}] = clamp(((uint64_t)bw * {f.bandwidth_mul}u) >> 24);
  f[{n + 3}] = clamp(((uint64_t)s->deadline_left_us * {f.time_mul}u) >> 24);
  f[{n + 4}] = clamp(((uint64_t)s->edge_wait_us * {f.time_mul}u) >> 24);
  f[{n + 5}] = clamp(((uint64_t)s->battery_pace_uj * {f.energy_mul}u) >> 24);
}}
"""


def _dqn(p: LearnedPolicy) -> str:
    arrays, calls = [], []
    widest = max(ly.weights.shape[0] for ly in p.layers)
    for i, ly in enumerate(p.layers):
        n_out, n_in = ly.weights.shape
        arrays.append(
            f"static const int8_t ee_w{i}[{n_out * n_in}] = {{\n  {_flat(ly.weights)}\n}};\n"
            f"static const int32_t ee_b{i}[{n_out}] = {{\n  {_flat(ly.bias)}\n}};\n"
        )
        src, dst = ("f" if i == 0 else "a" if i % 2 else "b"), ("q" if not ly.mul else "b" if i % 2 else "a")
        calls.append(f"  dense(ee_w{i}, ee_b{i}, {src}, {n_in}, {n_out}, {ly.mul}, {ly.shift}, {dst});")
    return f"""{_features(p)}
/* int8 MLP: per-tensor weight scales, int32 biases, ReLU activations requantized to 0..127. */
{"".join(arrays)}
/* out = W in + b; hidden layers (mul > 0): ReLU, then (acc * mul + 2^(shift-1)) >> shift, at most 127. */
static void dense(const int8_t *w, const int32_t *b, const int32_t *in, int n_in, int n_out, int32_t mul, int shift,
                  int32_t *out) {{
  int i, j;
  for (i = 0; i < n_out; ++i) {{
    int32_t acc = b[i];
    for (j = 0; j < n_in; ++j) {{
      acc += (int32_t)w[i * n_in + j] * in[j];
    }}
    if (mul == 0) {{
      out[i] = acc;
    }} else if (acc <= 0) {{
      out[i] = 0;
    }} else {{
      int64_t v = ((int64_t)acc * mul + ((int64_t)1 << (shift - 1))) >> shift;
      out[i] = v > 127 ? 127 : (int32_t)v;
    }}
  }}
}}

int ee_policy_decide(const ee_policy_state *state) {{
  uint32_t bw = state->bandwidth_bps ? state->bandwidth_bps : EE_NOMINAL_BPS;
  int32_t f[EE_FEATURES], a[{widest}], b[{widest}], q[3];
  uint8_t ok[3];
  if (state->exit_index >= EE_POLICY_DEVICE_EXITS) {{
    return EE_EXIT;
  }}
  features(state, bw, f);
{chr(10).join(calls)}
  allowed(state, bw, ok);
  return pick(q, ok);
}}
"""


def _tabular(p: LearnedPolicy) -> str:
    conf, d, bw_bins, time_bins, _ = p.table.shape
    return f"""/* Q-table over (confidence decile, device exit, bandwidth band, time-left quarter), int16. */
static const int16_t ee_q[{p.table.size}] = {{
  {_flat(p.table)}
}};

int ee_policy_decide(const ee_policy_state *state) {{
  uint32_t bw = state->bandwidth_bps ? state->bandwidth_bps : EE_NOMINAL_BPS;
  uint32_t top_q15, c, band = 0, t;
  uint64_t ratio;
  int32_t q[3];
  uint8_t ok[3];
  int a, k = state->exit_index;
  if (k >= EE_POLICY_DEVICE_EXITS) {{
    return EE_EXIT;
  }}
  top_q15 = (UINT32_C(1) << 30) / exp_sum(k, state->logits, state->num_classes);
  c = (top_q15 * {conf}u) >> 15;
  ratio = (uint64_t)bw * 8u / EE_NOMINAL_BPS;
  while (ratio >> (band + 1)) {{
    ++band;
  }}
  t = (uint32_t)((uint64_t)state->deadline_left_us * {time_bins}u / EE_DEADLINE_US);
  c = c < {conf - 1}u ? c : {conf - 1}u;
  band = band < {bw_bins - 1}u ? band : {bw_bins - 1}u;
  t = t < {time_bins - 1}u ? t : {time_bins - 1}u;
  for (a = 0; a < 3; ++a) {{
    q[a] = ee_q[(((c * {d}u + (uint32_t)k) * {bw_bins}u + band) * {time_bins}u + t) * 3u + (uint32_t)a];
  }}
  allowed(state, bw, ok);
  return pick(q, ok);
}}
"""


def source(banner: str, policy: ThresholdPolicy | LearnedPolicy) -> str:
    """``ee_policy.c`` for ``policy``."""
    if isinstance(policy, ThresholdPolicy):
        return banner + _threshold(policy)
    head = f"/* {policy.kind} policy exported by policy/intpolicy.py; see docs/policy.md. */\n"
    body = _dqn(policy) if policy.kind == "dqn" else _tabular(policy)
    common = _common(policy.tables, policy.features.num_exits, policy.device_exits)
    return f"{banner}{head}{common}\n{_mask(policy)}\n{body}"
