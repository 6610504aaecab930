/* int8 kernels with TFLite's integer arithmetic. See eenative.h. */
#include "eenative.h"

#include <string.h>

#if defined(EENATIVE_SIMD)
#if !defined(__ARM_FEATURE_SIMD32) || !__ARM_FEATURE_SIMD32
#error "EENATIVE_SIMD needs the Arm DSP extension (e.g. -mcpu=cortex-m4)"
#endif
#include <arm_acle.h>
#endif

static int32_t clamp(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* round(a * b / 2^31), ties away from zero, saturating the one overflowing case (INT32_MIN^2). */
static int32_t doubling_high_mul(int32_t a, int32_t b) {
  int64_t ab;
  int64_t nudge;
  if (a == INT32_MIN && b == INT32_MIN) {
    return INT32_MAX;
  }
  ab = (int64_t)a * (int64_t)b;
  nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
  return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* x / 2^e rounded to nearest, ties away from zero. */
static int32_t rounding_shift_right(int32_t x, int32_t e) {
  const int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> e) + (remainder > threshold ? 1 : 0);
}

/*
 * The requantization every kernel inlines: CMSIS-NN's formulation of TFLite's
 * MultiplyByQuantizedMultiplier. floor((a b + 2^30) / 2^31) equals doubling_high_mul's
 * round-half-away-from-zero quotient for every product but INT32_MIN^2 (for a b < 0 both are
 * -floor((|a b| + 2^30 - 1) / 2^31)), and mult is never INT32_MIN (QuantizeMultiplier gives 0 or
 * [2^30, 2^31)): one 32 x 32 -> 64-bit multiply-accumulate and two shifts, no 64-bit division.
 * The rounding right shift is TFLite's RoundingDivideByPOT. tests/test_native.py compares it with a
 * Python model of TFLite's arithmetic over random and edge-case (x, mult, shift).
 */
static inline int32_t requantize(int32_t x, int32_t mult, int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0;
  const int32_t right = shift > 0 ? 0 : -shift;
  const int64_t ab = (int64_t)(int32_t)((uint32_t)x << left) * mult + ((int64_t)1 << 30);
  const int32_t high = (int32_t)(ab >> 31);
  const int32_t mask = (int32_t)((1u << right) - 1u);
  const int32_t threshold = (mask >> 1) + (high < 0 ? 1 : 0);
  return (high >> right) + ((high & mask) > threshold ? 1 : 0);
}

int32_t een_requantize(int32_t x, int32_t mult, int32_t shift) { return requantize(x, mult, shift); }

static inline int8_t finish(int32_t acc, int32_t mult, int32_t shift, int32_t offset, int32_t lo, int32_t hi) {
  return (int8_t)clamp(requantize(acc, mult, shift) + offset, lo, hi);
}

/* Leading padding makes origins negative: the window's valid range of one axis. */
static int in_range(int v, int size) { return v >= 0 && v < size; }

#if defined(EENATIVE_SIMD)
/*
 * The SIMD dot products read 4 int8 weights per word and split them with __sxtb16 into the int16
 * pairs (w0, w2) and (w1, w3) (the second with the byte rotation SXTB16 does for free). A column holds
 * two patches ("lanes"; the convolution pairs output pixels so that every weight word serves two of
 * them) plus the input offset as int16 words: per group of 4 values, lane 0's (x0, x2), (x1, x3), then
 * lane 1's, so one __smlad multiplies and adds two pairs at once. A patch of n values takes
 * ceil(n / 4) groups; the last group's missing values are 0, which is why the converter pads every
 * weight array with zeros up to a whole word past its last row.
 */
static int32_t ld32(const void *p) {
  int32_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline int32_t sxtb16_ror8(int32_t v) {
  int32_t r;
  __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(v));
  return r;
}

/* (x0 + offset, x2 + offset) and (x1 + offset, x3 + offset) of 4 int8 values, into one lane of group g. */
static inline void put4(int32_t *col, size_t g, unsigned lane, int32_t v, int32_t offset2) {
  int32_t *slot = col + 4 * g + 2 * lane;
  int32_t odd;
  __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(odd) : "r"(offset2), "r"(v));
  slot[0] = __sxtab16(offset2, v);
  slot[1] = odd;
}

static int32_t pair16(int32_t v) { return (int32_t)(((uint32_t)(uint16_t)v << 16) | (uint16_t)v); }

/* Groups of 4 staged int8 values (any padding already holding the input zero point) into one lane. */
static void put_staged(int32_t *col, const int8_t *stage, size_t groups, unsigned lane, int32_t offset) {
  const int32_t offset2 = pair16(offset);
  size_t g;
  for (g = 0; g < groups; ++g) {
    put4(col, g, lane, ld32(stage + 4 * g), offset2);
  }
}

#if defined(__GNUC__)
#define EEN_NOINLINE __attribute__((noinline))
#else
#define EEN_NOINLINE
#endif

/* acc[0..3] += (lane 0 . w0, lane 0 . w1, lane 1 . w0, lane 1 . w1) over `groups` groups of a column.
   Out of line: inlined into the channel loop, its registers spill. */
static EEN_NOINLINE void dot_lanes(const int32_t *col, const int8_t *w0, const int8_t *w1, size_t groups,
                                   int32_t *acc) {
  const int32_t *end = col + 4 * groups;
  int32_t a0 = acc[0];
  int32_t a1 = acc[1];
  int32_t b0 = acc[2];
  int32_t b1 = acc[3];
  int32_t c0;
  int32_t c1;
  int32_t c2;
  int32_t c3;
  int32_t v;
  int32_t e;
  if (col == end) {
    return;
  }
  /* 18 instructions per 16 multiply-accumulates; in assembly because the compiler, short of one of
     the 14 registers this needs, spills the loop bound (22). */
  __asm__ volatile(
      "1:\n\t"
      "ldrd %[c0], %[c1], [%[col]], #8\n\t"
      "ldrd %[c2], %[c3], [%[col]], #8\n\t"
      "ldr %[v], [%[w0]], #4\n\t"
      "sxtb16 %[e], %[v]\n\t"
      "sxtb16 %[v], %[v], ror #8\n\t"
      "smlad %[a0], %[e], %[c0], %[a0]\n\t"
      "smlad %[a0], %[v], %[c1], %[a0]\n\t"
      "smlad %[b0], %[e], %[c2], %[b0]\n\t"
      "smlad %[b0], %[v], %[c3], %[b0]\n\t"
      "ldr %[v], [%[w1]], #4\n\t"
      "sxtb16 %[e], %[v]\n\t"
      "sxtb16 %[v], %[v], ror #8\n\t"
      "smlad %[a1], %[e], %[c0], %[a1]\n\t"
      "smlad %[a1], %[v], %[c1], %[a1]\n\t"
      "smlad %[b1], %[e], %[c2], %[b1]\n\t"
      "smlad %[b1], %[v], %[c3], %[b1]\n\t"
      "cmp %[col], %[end]\n\t"
      "bne 1b"
      : [a0] "+r"(a0), [a1] "+r"(a1), [b0] "+r"(b0), [b1] "+r"(b1), [col] "+r"(col), [w0] "+r"(w0),
        [w1] "+r"(w1), [c0] "=&r"(c0), [c1] "=&r"(c1), [c2] "=&r"(c2), [c3] "=&r"(c3), [v] "=&r"(v),
        [e] "=&r"(e)
      : [end] "r"(end)
      : "cc", "memory");
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = b0;
  acc[3] = b1;
}

/* Lane `lane` of the column: output pixel `pixel`'s patch plus the offset, zeros in the padding. */
static void conv_patch(const een_conv *op, const int8_t *input, int pixel, int32_t *col, unsigned lane) {
  const int iy0 = (pixel / op->out.w) * op->stride_h - op->pad_h;
  const int ix0 = (pixel % op->out.w) * op->stride_w - op->pad_w;
  const size_t in_c = op->in.c;
  const size_t n = (size_t)op->kh * op->kw * in_c;
  const size_t groups = (n + 3) / 4;
  int ky;
  int kx;
  if ((in_c & 3) == 0) { /* every pixel's channels are whole groups: straight from the input */
    const int32_t offset2 = pair16(op->input_offset);
    size_t g = 0;
    for (ky = 0; ky < op->kh; ++ky) {
      const int iy = iy0 + ky * op->dil_h;
      for (kx = 0; kx < op->kw; ++kx) {
        const int ix = ix0 + kx * op->dil_w;
        const size_t end = g + in_c / 4;
        if (in_range(iy, op->in.h) && in_range(ix, op->in.w)) {
          const int8_t *x = input + ((size_t)iy * op->in.w + ix) * in_c;
          for (; g < end; ++g, x += 4) {
            put4(col, g, lane, ld32(x), offset2);
          }
        } else {
          for (; g < end; ++g) {
            col[4 * g + 2 * lane] = 0;
            col[4 * g + 2 * lane + 1] = 0;
          }
        }
      }
    }
  } else { /* 1-3 (or any other count of) channels: the patch is staged as int8 first */
    int8_t *stage = (int8_t *)(col + 4 * groups);
    const int8_t zero_point = (int8_t)-op->input_offset; /* + offset = 0: padding adds nothing */
    size_t p = 0;
    size_t i;
    for (ky = 0; ky < op->kh; ++ky) {
      const int iy = iy0 + ky * op->dil_h;
      for (kx = 0; kx < op->kw; ++kx, p += in_c) {
        const int ix = ix0 + kx * op->dil_w;
        if (in_range(iy, op->in.h) && in_range(ix, op->in.w)) {
          const int8_t *x = input + ((size_t)iy * op->in.w + ix) * in_c;
          for (i = 0; i < in_c; ++i) {
            stage[p + i] = x[i];
          }
        } else {
          for (i = 0; i < in_c; ++i) {
            stage[p + i] = zero_point;
          }
        }
      }
    }
    for (; p < 4 * groups; ++p) {
      stage[p] = zero_point;
    }
    put_staged(col, stage, groups, lane, op->input_offset);
  }
}

/* Output pixels two at a time (an odd last one is paired with itself), channels two at a time. */
static void conv_simd(const een_conv *op, const int8_t *input, int8_t *output, int32_t *col) {
  const size_t n = (size_t)op->kh * op->kw * op->in.c;
  const size_t groups = (n + 3) / 4;
  const int pixels = op->out.h * op->out.w;
  const int out_c = op->out.c;
  const int32_t offset = op->output_offset;
  const int32_t lo = op->act_min;
  const int32_t hi = op->act_max;
  int p;
  for (p = 0; p < pixels; p += 2) {
    const int pair = p + 1 < pixels;
    int8_t *out_a = output + (size_t)p * out_c;
    int oc;
    conv_patch(op, input, p, col, 0);
    conv_patch(op, input, pair ? p + 1 : p, col, 1);
    for (oc = 0; oc < out_c; oc += 2) {
      const int next = oc + 1 < out_c ? oc + 1 : oc; /* an odd last channel is paired with itself */
      const int32_t m0 = op->mult[oc];
      const int32_t s0 = op->shift[oc];
      const int32_t m1 = op->mult[next];
      const int32_t s1 = op->shift[next];
      int32_t acc[4];
      acc[0] = acc[2] = op->bias ? op->bias[oc] : 0;
      acc[1] = acc[3] = op->bias ? op->bias[next] : 0;
      dot_lanes(col, op->weights + (size_t)oc * n, op->weights + (size_t)next * n, groups, acc);
      out_a[oc] = finish(acc[0], m0, s0, offset, lo, hi);
      out_a[next] = finish(acc[1], m1, s1, offset, lo, hi);
      if (pair) {
        out_a[out_c + oc] = finish(acc[2], m0, s0, offset, lo, hi);
        out_a[out_c + next] = finish(acc[3], m1, s1, offset, lo, hi);
      }
    }
  }
}

/* acc[0..1] += lane 0 . w0 and lane 0 . w1 over `groups` groups of a column. */
static EEN_NOINLINE void dot_lane0(const int32_t *col, const int8_t *w0, const int8_t *w1, size_t groups,
                                   int32_t *acc) {
  const int32_t *end = col + 4 * groups;
  int32_t a0 = acc[0];
  int32_t a1 = acc[1];
  for (; col < end; col += 4, w0 += 4, w1 += 4) {
    const int32_t c0 = col[0];
    const int32_t c1 = col[1];
    const int32_t v0 = ld32(w0);
    const int32_t v1 = ld32(w1);
    a0 = __smlad(sxtb16_ror8(v0), c1, __smlad(__sxtb16(v0), c0, a0));
    a1 = __smlad(sxtb16_ror8(v1), c1, __smlad(__sxtb16(v1), c0, a1));
  }
  acc[0] = a0;
  acc[1] = a1;
}

/* One fully connected row: its input staged (zero point up to a whole group) into lane 0, outputs in pairs. */
static void fc_simd(const een_fc *op, const int8_t *x, int8_t *out, int32_t *col) {
  const size_t n = op->in_depth;
  const size_t groups = (n + 3) / 4;
  int8_t *stage = (int8_t *)(col + 4 * groups);
  const int out_c = op->out_depth;
  int oc;
  size_t i;
  memcpy(stage, x, n);
  for (i = n; i < 4 * groups; ++i) {
    stage[i] = (int8_t)-op->input_offset;
  }
  put_staged(col, stage, groups, 0, op->input_offset);
  for (oc = 0; oc < out_c; oc += 2) {
    const int next = oc + 1 < out_c ? oc + 1 : oc;
    const int k0 = op->per_channel ? oc : 0;
    const int k1 = op->per_channel ? next : 0;
    int32_t acc[2];
    acc[0] = op->bias ? op->bias[oc] : 0;
    acc[1] = op->bias ? op->bias[next] : 0;
    dot_lane0(col, op->weights + (size_t)oc * n, op->weights + (size_t)next * n, groups, acc);
    out[oc] = finish(acc[0], op->mult[k0], op->shift[k0], op->output_offset, op->act_min, op->act_max);
    out[next] = finish(acc[1], op->mult[k1], op->shift[k1], op->output_offset, op->act_min, op->act_max);
  }
}
#endif

void een_conv2d_s8(const een_conv *op, const int8_t *input, int8_t *output, void *scratch) {
#if defined(EENATIVE_SIMD)
  conv_simd(op, input, output, (int32_t *)scratch);
#else
  const int in_c = op->in.c;
  const size_t row = (size_t)op->kw * in_c;
  int oy;
  int ox;
  (void)scratch;
  for (oy = 0; oy < op->out.h; ++oy) {
    for (ox = 0; ox < op->out.w; ++ox) {
      const int iy0 = oy * op->stride_h - op->pad_h;
      const int ix0 = ox * op->stride_w - op->pad_w;
      int8_t *out = output + ((size_t)oy * op->out.w + ox) * op->out.c;
      int oc;
      for (oc = 0; oc < op->out.c; ++oc) {
        int32_t acc = op->bias ? op->bias[oc] : 0;
        int ky;
        int kx;
        int ic;
        for (ky = 0; ky < op->kh; ++ky) {
          const int iy = iy0 + ky * op->dil_h;
          if (!in_range(iy, op->in.h)) {
            continue;
          }
          for (kx = 0; kx < op->kw; ++kx) {
            const int ix = ix0 + kx * op->dil_w;
            const int8_t *x = input + ((size_t)iy * op->in.w + ix) * in_c;
            const int8_t *w = op->weights + ((size_t)oc * op->kh + ky) * row + (size_t)kx * in_c;
            if (!in_range(ix, op->in.w)) {
              continue;
            }
            for (ic = 0; ic < in_c; ++ic) {
              acc += (x[ic] + op->input_offset) * w[ic];
            }
          }
        }
        out[oc] = finish(acc, op->mult[oc], op->shift[oc], op->output_offset, op->act_min, op->act_max);
      }
    }
  }
#endif
}

void een_depthwise_s8(const een_depthwise *op, const int8_t *input, int8_t *output) {
  int oy;
  int ox;
  int oc;
  for (oy = 0; oy < op->out.h; ++oy) {
    for (ox = 0; ox < op->out.w; ++ox) {
      const int iy0 = oy * op->stride_h - op->pad_h;
      const int ix0 = ox * op->stride_w - op->pad_w;
      for (oc = 0; oc < op->out.c; ++oc) {
        const int ic = oc / op->depth_multiplier;
        int32_t acc = op->bias ? op->bias[oc] : 0;
        int ky;
        int kx;
        for (ky = 0; ky < op->kh; ++ky) {
          const int iy = iy0 + ky * op->dil_h;
          for (kx = 0; kx < op->kw; ++kx) {
            const int ix = ix0 + kx * op->dil_w;
            if (in_range(iy, op->in.h) && in_range(ix, op->in.w)) {
              const int32_t x = input[((size_t)iy * op->in.w + ix) * op->in.c + ic];
              acc += (x + op->input_offset) * op->weights[((size_t)ky * op->kw + kx) * op->out.c + oc];
            }
          }
        }
        output[((size_t)oy * op->out.w + ox) * op->out.c + oc] =
            finish(acc, op->mult[oc], op->shift[oc], op->output_offset, op->act_min, op->act_max);
      }
    }
  }
}

void een_fc_s8(const een_fc *op, const int8_t *input, int8_t *output, void *scratch) {
  int b;
  for (b = 0; b < op->batches; ++b) {
    const int8_t *x = input + (size_t)b * op->in_depth;
    int8_t *out = output + (size_t)b * op->out_depth;
#if defined(EENATIVE_SIMD)
    fc_simd(op, x, out, (int32_t *)scratch);
#else
    int oc;
    (void)scratch;
    for (oc = 0; oc < op->out_depth; ++oc) {
      const int8_t *w = op->weights + (size_t)oc * op->in_depth;
      const int k = op->per_channel ? oc : 0;
      int32_t acc = op->bias ? op->bias[oc] : 0;
      int i;
      for (i = 0; i < op->in_depth; ++i) {
        acc += (x[i] + op->input_offset) * w[i];
      }
      out[oc] = finish(acc, op->mult[k], op->shift[k], op->output_offset, op->act_min, op->act_max);
    }
#endif
  }
}

/* The window of output (oy, ox) clipped to the input: [y0, y1) x [x0, x1). */
static void pool_window(const een_pool *op, int oy, int ox, int *y0, int *y1, int *x0, int *x1) {
  const int iy = oy * op->stride_h - op->pad_h;
  const int ix = ox * op->stride_w - op->pad_w;
  *y0 = iy < 0 ? 0 : iy;
  *x0 = ix < 0 ? 0 : ix;
  *y1 = iy + op->kh > op->in.h ? op->in.h : iy + op->kh;
  *x1 = ix + op->kw > op->in.w ? op->in.w : ix + op->kw;
}

/* Max or average (rounded half away from zero) over each window clipped to the input. */
static void pool(const een_pool *op, const int8_t *input, int8_t *output, int average) {
  int oy;
  int ox;
  int c;
  for (oy = 0; oy < op->out.h; ++oy) {
    for (ox = 0; ox < op->out.w; ++ox) {
      int y0;
      int y1;
      int x0;
      int x1;
      int32_t count;
      pool_window(op, oy, ox, &y0, &y1, &x0, &x1);
      count = (int32_t)(y1 - y0) * (x1 - x0); /* > 0: the converter rejects windows wholly in the padding */
      for (c = 0; c < op->out.c; ++c) {
        int32_t v = average ? 0 : -128;
        int y;
        int x;
        for (y = y0; y < y1; ++y) {
          for (x = x0; x < x1; ++x) {
            const int32_t in = input[((size_t)y * op->in.w + x) * op->in.c + c];
            v = average ? v + in : (in > v ? in : v);
          }
        }
        if (average) {
          v = v > 0 ? (v + count / 2) / count : (v - count / 2) / count;
        }
        output[((size_t)oy * op->out.w + ox) * op->out.c + c] = (int8_t)clamp(v, op->act_min, op->act_max);
      }
    }
  }
}

#if defined(EENATIVE_SIMD)
/* Max pooling four channels at a time: __ssub8 sets a GE flag per byte where a >= b, __sel picks by them. */
static void max_pool4(const een_pool *op, const int8_t *input, int8_t *output) {
  const int32_t lo = (int32_t)(0x01010101u * (uint8_t)op->act_min);
  const int32_t hi = (int32_t)(0x01010101u * (uint8_t)op->act_max);
  const size_t c4 = op->out.c;
  int oy;
  int ox;
  size_t c;
  for (oy = 0; oy < op->out.h; ++oy) {
    for (ox = 0; ox < op->out.w; ++ox) {
      int8_t *out = output + ((size_t)oy * op->out.w + ox) * c4;
      int y0;
      int y1;
      int x0;
      int x1;
      pool_window(op, oy, ox, &y0, &y1, &x0, &x1);
      for (c = 0; c < c4; c += 4) {
        int32_t m = lo; /* max(window, act_min) */
        int y;
        int x;
        for (y = y0; y < y1; ++y) {
          const int8_t *in = input + ((size_t)y * op->in.w + x0) * op->in.c + c;
          for (x = x0; x < x1; ++x, in += op->in.c) {
            const int32_t v = ld32(in);
            (void)__ssub8(v, m);
            m = (int32_t)__sel(v, m);
          }
        }
        (void)__ssub8(m, hi);
        m = (int32_t)__sel(hi, m); /* min(., act_max) */
        memcpy(out + c, &m, 4);
      }
    }
  }
}
#endif

void een_max_pool_s8(const een_pool *op, const int8_t *input, int8_t *output) {
#if defined(EENATIVE_SIMD)
  if ((op->out.c & 3) == 0) {
    max_pool4(op, input, output);
    return;
  }
#endif
  pool(op, input, output, 0);
}

void een_avg_pool_s8(const een_pool *op, const int8_t *input, int8_t *output) { pool(op, input, output, 1); }

void een_pad_s8(const een_pad *op, const int8_t *input, int8_t *output) {
  const size_t out_row = (size_t)op->out.w * op->out.c;
  int y;
  int x;
  memset(output, op->value, (size_t)op->out.h * out_row);
  for (y = 0; y < op->in.h; ++y) {
    for (x = 0; x < op->in.w; ++x) {
      memcpy(output + (y + op->before_h) * out_row + (size_t)(x + op->before_w) * op->out.c + op->before_c,
             input + ((size_t)y * op->in.w + x) * op->in.c, op->in.c);
    }
  }
}

void een_mean_s8(const een_mean *op, const int8_t *input, int8_t *output) {
  const size_t pixels = (size_t)op->in.h * op->in.w;
  const int32_t zero_sum = op->input_zero_point * (int32_t)pixels;
  int c;
  for (c = 0; c < op->in.c; ++c) {
    int32_t acc = 0;
    size_t i;
    for (i = 0; i < pixels; ++i) {
      acc += input[i * op->in.c + c];
    }
    output[c] = finish(acc - zero_sum, op->mult, op->shift, op->output_zero_point, -128, 127);
  }
}

/* Input i's rescaled term of ADD: (x + offset) * 2^left_shift, requantized with its multiplier. */
static int32_t add_term(int32_t x, int32_t offset, int32_t left_shift, int32_t mult, int32_t shift) {
  return requantize((int32_t)((uint32_t)(x + offset) << left_shift), mult, shift);
}

void een_add_s8(const een_add *op, const int8_t *input1, const int8_t *input2, int8_t *output, void *scratch) {
  uint32_t i;
#if defined(EENATIVE_SIMD)
  /* Each input's term depends on its int8 value only: two 256-entry tables (indexed by the byte as
     uint8), then one requantization per element. */
  int32_t *t1 = (int32_t *)scratch;
  int32_t *t2 = t1 + 256;
  const uint8_t *u1 = (const uint8_t *)input1;
  const uint8_t *u2 = (const uint8_t *)input2;
  for (i = 0; i < 256; ++i) {
    const int32_t x = (int8_t)(uint8_t)i;
    t1[i] = add_term(x, op->input1_offset, op->left_shift, op->input1_mult, op->input1_shift);
    t2[i] = add_term(x, op->input2_offset, op->left_shift, op->input2_mult, op->input2_shift);
  }
  {
    /* locals: the int8 stores below could alias *op, which would reload every field per element */
    const uint32_t size = op->size;
    const int32_t mult = op->output_mult;
    const int32_t shift = op->output_shift;
    const int32_t offset = op->output_offset;
    const int32_t lo = op->act_min;
    const int32_t hi = op->act_max;
    for (i = 0; i < size; ++i) {
      output[i] = finish(t1[u1[i]] + t2[u2[i]], mult, shift, offset, lo, hi);
    }
  }
#else
  (void)scratch;
  for (i = 0; i < op->size; ++i) {
    const int32_t sum = add_term(input1[i], op->input1_offset, op->left_shift, op->input1_mult, op->input1_shift) +
                        add_term(input2[i], op->input2_offset, op->left_shift, op->input2_mult, op->input2_shift);
    output[i] = finish(sum, op->output_mult, op->output_shift, op->output_offset, op->act_min, op->act_max);
  }
#endif
}

/* x * 2^e (e > 0) saturated to int32. */
static int32_t saturating_shift_left(int32_t x, int32_t e) {
  const int32_t limit = (int32_t)(((int64_t)1 << (31 - e)) - 1);
  if (x > limit) {
    return INT32_MAX;
  }
  if (x < -limit) {
    return INT32_MIN;
  }
  return (int32_t)((uint32_t)x << e);
}

/* exp(a) for a in [-1/4, 0), Q0.31 in and out: a Taylor polynomial around -1/8. */
static int32_t exp_quarter(int32_t a) {
  const int32_t exp_minus_eighth = 1895147668; /* exp(-1/8) in Q0.31 */
  const int32_t third = 715827883;             /* 1/3 in Q0.31 */
  const int32_t x = a + (1 << 28);             /* a + 1/8 */
  const int32_t x2 = doubling_high_mul(x, x);
  const int32_t x3 = doubling_high_mul(x2, x);
  const int32_t x4 = doubling_high_mul(x2, x2);
  const int32_t terms = rounding_shift_right(
      doubling_high_mul(rounding_shift_right(x4, 2) + x3, third) + x2, 1); /* x^2/2 + x^3/6 + x^4/24 */
  return exp_minus_eighth + doubling_high_mul(exp_minus_eighth, x + terms);
}

/* exp(a) for a <= 0 in Q5.26, result in Q0.31: exp of a mod 1/4, times exp(-2^k) for the other bits. */
static int32_t exp_negative(int32_t a) {
  static const int32_t factors[7] = {/* exp(-1/4), exp(-1/2), ..., exp(-16) in Q0.31 */
                                     1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
  const int32_t quarter = 1 << 24;
  const int32_t low = (a & (quarter - 1)) - quarter; /* in [-1/4, 0) */
  const int32_t rest = low - a;                      /* multiples of 1/4 still to apply */
  int32_t result = exp_quarter(saturating_shift_left(low, 5));
  int k;
  for (k = 0; k < 7; ++k) {
    if (rest & ((int32_t)1 << (24 + k))) {
      result = doubling_high_mul(result, factors[k]);
    }
  }
  return a == 0 ? INT32_MAX : result;
}

/* 1 / (1 + x) for x in [0, 1), Q0.31 in and out: three Newton-Raphson steps in Q2.29 from 48/17 - 32/17 d. */
static int32_t reciprocal_one_plus(int32_t x) {
  const int64_t sum = (int64_t)x + INT32_MAX;
  const int32_t half_d = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2); /* (1 + x) / 2 in Q0.31 */
  int32_t r = 1515870810 + doubling_high_mul(half_d, -1010580540);  /* 48/17, -32/17 in Q2.29 */
  int i;
  for (i = 0; i < 3; ++i) {
    const int32_t error = (1 << 29) - doubling_high_mul(half_d, r);
    r += saturating_shift_left(doubling_high_mul(r, error), 2);
  }
  return saturating_shift_left(r, 1);
}

static int leading_zeros(uint32_t v) {
  int n = 0;
  while (!(v & 0x80000000u)) {
    v <<= 1;
    ++n;
  }
  return n;
}

void een_softmax_s8(const een_softmax *op, const int8_t *input, int8_t *output) {
  uint32_t row;
  for (row = 0; row < op->rows; ++row) {
    const int8_t *x = input + (size_t)row * op->depth;
    int8_t *out = output + (size_t)row * op->depth;
    int32_t top = -128;
    int32_t sum = 0; /* Q12.19 */
    int headroom;
    int32_t scale;
    int c;
    for (c = 0; c < op->depth; ++c) {
      top = x[c] > top ? x[c] : top;
    }
    for (c = 0; c < op->depth; ++c) {
      const int32_t diff = x[c] - top;
      if (diff >= op->diff_min) {
        sum += rounding_shift_right(exp_negative(requantize(diff, op->mult, op->left_shift)), 12);
      }
    }
    headroom = leading_zeros((uint32_t)sum); /* sum >= exp(0): the row maximum's term */
    scale = reciprocal_one_plus((int32_t)(((uint32_t)sum << headroom) - 0x80000000u));
    for (c = 0; c < op->depth; ++c) {
      const int32_t diff = x[c] - top;
      int32_t v = -128;
      if (diff >= op->diff_min) {
        const int32_t e = exp_negative(requantize(diff, op->mult, op->left_shift));
        v = rounding_shift_right(doubling_high_mul(scale, e), 12 - headroom + 31 - 8) - 128;
      }
      out[c] = (int8_t)clamp(v, -128, 127);
    }
  }
}
