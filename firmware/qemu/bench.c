/* Instruction counts of the native slices on QEMU's mps2-an386 (run with -icount shift=0).
 *
 * Runs every device slice on each compiled-in sample (ee_demo_samples.h), whatever the policy would
 * decide (quantized through ee_input_lut, or, built with -DEEQ_BENCH_INT8_INPUT, taken as int8 values
 * as they are), and reads TIMER0 (one tick per EEQ_INSNS_PER_TICK instructions) before each slice and
 * after each of its kernels (the EE_NATIVE_OP_DONE hook, bench_hook.h). Prints, on the semihosting
 * console, one line per slice run and per kernel, then the stack high-water mark, and exits 0:
 *   bench slices S samples N arena A simd 0|1
 *   slice K sample I ticks T logits L0,L1,... trunk_fnv1a H
 *   op K J sample I ticks T      (J: the kernel's op index in the slice; ticks since the previous reading)
 *   stack B
 * benchmarks/qemu_instructions.py turns this into instructions (docs/qemu.md).
 *
 * Built with -DEEQ_BENCH_TFLM it runs the slices through the firmware's TFLite Micro seam instead
 * (eefw_run_slice, src/tflm_runner.cpp, with the TFLM library and its CMSIS-NN kernels): the same lines
 * without the per-kernel ones, "arena" being EE_ARENA_BYTES (benchmarks/tflm_vs_native.py).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bench_hook.h"
#include "ee_demo_samples.h"
#include "ee_model.h"
#include "mps2.h"
#if defined(EEQ_BENCH_TFLM)
#include "tflm_runner.h"
#define BENCH_ARENA_BYTES EE_ARENA_BYTES
#else
#include "ee_native.h"
#define BENCH_ARENA_BYTES EE_NATIVE_ARENA_BYTES
#endif

#define INPUT_BYTES ((size_t)EE_INPUT_H * EE_INPUT_W * EE_INPUT_C)
#define ACT_BYTES (INPUT_BYTES > (size_t)EE_MAX_TRUNK_BYTES ? INPUT_BYTES : (size_t)EE_MAX_TRUNK_BYTES)
#define MAX_OPS 64

static int8_t act[2][ACT_BYTES];
static int8_t logits[EE_NUM_CLASSES];
static uint64_t op_ticks[MAX_OPS + 1]; /* [0]: the slice's start; [n + 1]: after the n-th kernel call */
static int op_index[MAX_OPS];          /* the op index of the n-th kernel call (ops without a kernel make none) */
static int op_count;
static char line[64 + 5 * EE_NUM_CLASSES];

void eeq_op_done(int slice, int op) {
  uint64_t now = eeq_ticks();
  (void)slice;
  if (op_count < MAX_OPS) {
    op_index[op_count] = op;
    op_ticks[++op_count] = now;
  }
}

static char *put_text(char *p, const char *text) {
  while (*text) {
    *p++ = *text++;
  }
  return p;
}

static char *put_int(char *p, int64_t v) {
  char digits[24];
  int n = 0;
  uint64_t u = v < 0 ? (uint64_t)(-(v + 1)) + 1u : (uint64_t)v;
  if (v < 0) {
    *p++ = '-';
  }
  do {
    digits[n++] = (char)('0' + u % 10u);
    u /= 10u;
  } while (u != 0);
  while (n > 0) {
    *p++ = digits[--n];
  }
  return p;
}

static void emit(char *end) {
  *end++ = '\n';
  *end = '\0';
  eeq_console(line);
}

static uint32_t fnv1a(const int8_t *data, size_t n) {
  uint32_t h = 2166136261u;
  size_t i;
  for (i = 0; i < n; ++i) {
    h = (h ^ (uint8_t)data[i]) * 16777619u;
  }
  return h;
}

#if defined(EEQ_BENCH_TFLM)
static int bench_run(int k, const int8_t *in, int8_t *trunk) {
  eec_slice_out out;
  memset(&out, 0, sizeof out);
  out.logits = logits;
  out.trunk = trunk;
  return eefw_run_slice(NULL, k, in, &out);
}
#else
static int bench_run(int k, const int8_t *in, int8_t *trunk) { return ee_native_run_slice(k, in, logits, trunk); }
#endif

static void run_slice(int k, int sample, const int8_t *in, int8_t *trunk) {
  char *p;
  uint64_t t0, t1;
  int j;
  op_count = 0;
  t0 = eeq_ticks();
  op_ticks[0] = t0;
  if (bench_run(k, in, trunk) != 0) {
    eeq_console("bench: running the slice failed\n");
    eeq_exit(1);
  }
  t1 = eeq_ticks();
  p = put_int(put_text(line, "slice "), k);
  p = put_int(put_text(p, " sample "), sample);
  p = put_int(put_text(p, " ticks "), (int64_t)(t1 - t0));
  p = put_text(p, " logits ");
  for (j = 0; j < EE_NUM_CLASSES; ++j) {
    p = put_int(p, logits[j]);
    *p++ = j + 1 < EE_NUM_CLASSES ? ',' : ' ';
  }
  p = put_int(put_text(p, "trunk_fnv1a "), fnv1a(trunk, ee_slices[k].trunk_bytes));
  emit(p);
  for (j = 0; j < op_count; ++j) {
    p = put_int(put_text(line, "op "), k);
    p = put_int(put_text(p, " "), op_index[j]);
    p = put_int(put_text(p, " sample "), sample);
    p = put_int(put_text(p, " ticks "), (int64_t)(op_ticks[j + 1] - op_ticks[j]));
    emit(p);
  }
}

int main(void) {
  int s, k;
  char *p;
  eeq_board_init(0); /* no SysTick: nothing but the slices runs between two readings */
  p = put_int(put_text(line, "bench slices "), EE_DEVICE_SLICES);
  p = put_int(put_text(p, " samples "), EE_DEMO_SAMPLES);
  p = put_int(put_text(p, " arena "), BENCH_ARENA_BYTES);
#ifdef EENATIVE_SIMD
  p = put_text(p, " simd 1");
#else
  p = put_text(p, " simd 0");
#endif
  emit(p);
  for (s = 0; s < EE_DEMO_SAMPLES; ++s) {
    size_t i;
    int8_t *in = act[0], *trunk = act[1], *swap;
    for (i = 0; i < INPUT_BYTES; ++i) {
#ifdef EEQ_BENCH_INT8_INPUT
      const int byte = ee_demo_pixels[s][i]; /* an int8 value stored as its two's complement byte */
      act[0][i] = (int8_t)(byte < 128 ? byte : byte - 256);
#else
      act[0][i] = ee_input_lut[i % EE_INPUT_C][ee_demo_pixels[s][i]];
#endif
    }
    for (k = 0; k < EE_DEVICE_SLICES; ++k) {
      run_slice(k, s, in, trunk);
      swap = in;
      in = trunk;
      trunk = swap;
    }
  }
  emit(put_int(put_text(line, "stack "), (int64_t)eeq_stack_used()));
  return 0;
}
