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

int32_t een_requantize(int32_t x, int32_t mult, int32_t shift) {
  const int32_t left = shift > 0 ? shift : 0;
  const int32_t right = shift > 0 ? 0 : -shift;
  return rounding_shift_right(doubling_high_mul((int32_t)((uint32_t)x << left), mult), right);
}

static int8_t finish(int32_t acc, int32_t mult, int32_t shift, int32_t offset, int32_t lo, int32_t hi) {
  return (int8_t)clamp(een_requantize(acc, mult, shift) + offset, lo, hi);
}

/* Leading padding makes origins negative: the window's valid range of one axis. */
static int in_range(int v, int size) { return v >= 0 && v < size; }

#if defined(EENATIVE_SIMD)
/*
 * The SIMD dot products read 4 int8 weights per word and split them with __sxtb16 into the int16
 * pairs (w0, w2) and (w1, w3). The int16 column holding (input + offset) is written in the same
 * order, [x0, x2, x1, x3] per group of 4, so one __smlad multiplies and adds two pairs at once.
 * The last n % 4 values stay in natural order and are done one by one.
 */
static int32_t ld32(const void *p) {
  int32_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

static int32_t ror8(int32_t v) { return (int32_t)(((uint32_t)v >> 8) | ((uint32_t)v << 24)); }

/*
 * A column holds one or two patches ("lanes"; the convolution pairs output pixels so that every weight
 * word serves two of them). Groups of 4 values lie word-interleaved: lane 0's [x0, x2, x1, x3], then
 * lane 1's. The last n % 4 values of each lane follow all groups, in natural order.
 */
typedef struct {
  int16_t *base;
  size_t n4, rest;
  unsigned lanes, lane;
} column;

static size_t col_slot(const column *c, size_t p) {
  static const uint8_t reorder[4] = {0, 2, 1, 3};
  if (p < c->n4) {
    return (p >> 2) * 4u * c->lanes + 4u * c->lane + reorder[p & 3];
  }
  return c->lanes * c->n4 + c->lane * c->rest + (p - c->n4);
}

/* Writes n values (x + offset) at position p; 4-aligned runs use SIMD. */
static void col_put(const column *c, size_t p, const int8_t *x, size_t n, int32_t offset) {
  size_t i = 0;
  if ((p & 3) == 0) {
    const int32_t off2 = (int32_t)(((uint32_t)(uint16_t)offset << 16) | (uint16_t)offset);
    for (; i + 4 <= n && p + i + 4 <= c->n4; i += 4) {
      const int32_t v = ld32(x + i);
      const int32_t even = __sadd16(__sxtb16(v), off2);
      const int32_t odd = __sadd16(__sxtb16(ror8(v)), off2);
      int16_t *slot = c->base + col_slot(c, p + i);
      memcpy(slot, &even, 4);
      memcpy(slot + 2, &odd, 4);
    }
  }
  for (; i < n; ++i) {
    c->base[col_slot(c, p + i)] = (int16_t)(x[i] + offset);
  }
}

static void col_zero(const column *c, size_t p, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i) {
    c->base[col_slot(c, p + i)] = 0;
  }
}

/* acc[0..1] += col . w0 and col . w1 over n values (n4 of them in groups of 4). */
static void dot2(const int16_t *col, const int8_t *w0, const int8_t *w1, size_t n, size_t n4, int32_t *acc) {
  int32_t a0 = acc[0];
  int32_t a1 = acc[1];
  size_t i;
  for (i = 0; i < n4; i += 4) {
    const int32_t c02 = ld32(col + i);
    const int32_t c13 = ld32(col + i + 2);
    const int32_t v0 = ld32(w0 + i);
    const int32_t v1 = ld32(w1 + i);
    a0 = __smlad(__sxtb16(v0), c02, a0);
    a0 = __smlad(__sxtb16(ror8(v0)), c13, a0);
    a1 = __smlad(__sxtb16(v1), c02, a1);
    a1 = __smlad(__sxtb16(ror8(v1)), c13, a1);
  }
  for (; i < n; ++i) {
    a0 += col[i] * w0[i];
    a1 += col[i] * w1[i];
  }
  acc[0] = a0;
  acc[1] = a1;
}

static int32_t dot1(const int16_t *col, const int8_t *w, size_t n, size_t n4, int32_t acc) {
  size_t i;
  for (i = 0; i < n4; i += 4) {
    const int32_t v = ld32(w + i);
    acc = __smlad(__sxtb16(v), ld32(col + i), acc);
    acc = __smlad(__sxtb16(ror8(v)), ld32(col + i + 2), acc);
  }
  for (; i < n; ++i) {
    acc += col[i] * w[i];
  }
  return acc;
}

/* One output pixel for every output channel from its filled column. */
static void dot_channels(const int16_t *col, const int8_t *weights, size_t n, const int32_t *bias,
                         const int32_t *mult, const int32_t *shift, int per_channel, int32_t out_c,
                         int32_t offset, int32_t lo, int32_t hi, int8_t *out) {
  const size_t n4 = n & ~(size_t)3;
  int32_t oc = 0;
  for (; oc + 2 <= out_c; oc += 2) {
    int32_t acc[2];
    const int32_t k0 = per_channel ? oc : 0;
    const int32_t k1 = per_channel ? oc + 1 : 0;
    acc[0] = bias ? bias[oc] : 0;
    acc[1] = bias ? bias[oc + 1] : 0;
    dot2(col, weights + (size_t)oc * n, weights + (size_t)(oc + 1) * n, n, n4, acc);
    out[oc] = finish(acc[0], mult[k0], shift[k0], offset, lo, hi);
    out[oc + 1] = finish(acc[1], mult[k1], shift[k1], offset, lo, hi);
  }
  if (oc < out_c) {
    const int32_t k = per_channel ? oc : 0;
    const int32_t acc = dot1(col, weights + (size_t)oc * n, n, n4, bias ? bias[oc] : 0);
    out[oc] = finish(acc, mult[k], shift[k], offset, lo, hi);
  }
}
#endif

#if defined(EENATIVE_SIMD)
/* Lane `lane` of the two-lane column: output pixel `pixel`'s patch plus the offset, zeros in the padding. */
static void conv_patch(const een_conv *op, const int8_t *input, int pixel, int16_t *scratch, unsigned lane) {
  const int iy0 = (pixel / op->out.w) * op->stride_h - op->pad_h;
  const int ix0 = (pixel % op->out.w) * op->stride_w - op->pad_w;
  const size_t in_c = op->in.c;
  const size_t n = (size_t)op->kh * op->kw * in_c;
  column c;
  int ky;
  int kx;
  c.base = scratch;
  c.n4 = n & ~(size_t)3;
  c.rest = n - c.n4;
  c.lanes = 2;
  c.lane = lane;
  for (ky = 0; ky < op->kh; ++ky) {
    const int iy = iy0 + ky * op->dil_h;
    for (kx = 0; kx < op->kw; ++kx) {
      const int ix = ix0 + kx * op->dil_w;
      const size_t p = ((size_t)ky * op->kw + kx) * in_c;
      if (in_range(iy, op->in.h) && in_range(ix, op->in.w)) {
        col_put(&c, p, input + ((size_t)iy * op->in.w + ix) * in_c, in_c, op->input_offset);
      } else {
        col_zero(&c, p, in_c);
      }
    }
  }
}

/* Kept out of line: inlined, its 4 accumulators, 3 pointers and 6 temporaries spill to the stack. */
#if defined(__GNUC__)
#define EEN_NOINLINE __attribute__((noinline))
#else
#define EEN_NOINLINE
#endif

/* acc[0..3] += (lane 0 . w0, lane 0 . w1, lane 1 . w0, lane 1 . w1) over n values of a two-lane column. */
static EEN_NOINLINE void dot_lanes(const int16_t *col, const int8_t *w0, const int8_t *w1, size_t n, int32_t *acc) {
  const size_t n4 = n & ~(size_t)3;
  const int16_t *end = col + 2 * n4;
  const int16_t *tail = end;
  int32_t a0 = acc[0];
  int32_t a1 = acc[1];
  int32_t b0 = acc[2];
  int32_t b1 = acc[3];
  size_t i;
  for (; col < end; col += 8, w0 += 4, w1 += 4) {
    int32_t v = ld32(w0);
    int32_t e = __sxtb16(v);
    int32_t o = __sxtb16(ror8(v));
    a0 = __smlad(o, ld32(col + 2), __smlad(e, ld32(col), a0));
    b0 = __smlad(o, ld32(col + 6), __smlad(e, ld32(col + 4), b0));
    v = ld32(w1);
    e = __sxtb16(v);
    o = __sxtb16(ror8(v));
    a1 = __smlad(o, ld32(col + 2), __smlad(e, ld32(col), a1));
    b1 = __smlad(o, ld32(col + 6), __smlad(e, ld32(col + 4), b1));
  }
  for (i = 0; i < n - n4; ++i) {
    a0 += tail[i] * w0[i];
    a1 += tail[i] * w1[i];
    b0 += tail[n - n4 + i] * w0[i];
    b1 += tail[n - n4 + i] * w1[i];
  }
  acc[0] = a0;
  acc[1] = a1;
  acc[2] = b0;
  acc[3] = b1;
}

/* Output pixels two at a time (an odd last one is paired with itself), channels two at a time. */
static void conv_simd(const een_conv *op, const int8_t *input, int8_t *output, int16_t *scratch) {
  const size_t n = (size_t)op->kh * op->kw * op->in.c;
  const int pixels = op->out.h * op->out.w;
  const int out_c = op->out.c;
  int p;
  for (p = 0; p < pixels; p += 2) {
    const int pair = p + 1 < pixels;
    int8_t *out_a = output + (size_t)p * out_c;
    int8_t *out_b = out_a + out_c;
    int oc;
    conv_patch(op, input, p, scratch, 0);
    conv_patch(op, input, pair ? p + 1 : p, scratch, 1);
    for (oc = 0; oc < out_c; oc += 2) {
      const int next = oc + 1 < out_c ? oc + 1 : oc; /* an odd last channel is paired with itself */
      int32_t acc[4];
      acc[0] = acc[2] = op->bias ? op->bias[oc] : 0;
      acc[1] = acc[3] = op->bias ? op->bias[next] : 0;
      dot_lanes(scratch, op->weights + (size_t)oc * n, op->weights + (size_t)next * n, n, acc);
      out_a[oc] = finish(acc[0], op->mult[oc], op->shift[oc], op->output_offset, op->act_min, op->act_max);
      out_a[next] = finish(acc[1], op->mult[next], op->shift[next], op->output_offset, op->act_min, op->act_max);
      if (pair) {
        out_b[oc] = finish(acc[2], op->mult[oc], op->shift[oc], op->output_offset, op->act_min, op->act_max);
        out_b[next] = finish(acc[3], op->mult[next], op->shift[next], op->output_offset, op->act_min, op->act_max);
      }
    }
  }
}
#endif

void een_conv2d_s8(const een_conv *op, const int8_t *input, int8_t *output, int16_t *scratch) {
#if defined(EENATIVE_SIMD)
  conv_simd(op, input, output, scratch);
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

void een_fc_s8(const een_fc *op, const int8_t *input, int8_t *output, int16_t *scratch) {
  int b;
  for (b = 0; b < op->batches; ++b) {
    const int8_t *x = input + (size_t)b * op->in_depth;
    int8_t *out = output + (size_t)b * op->out_depth;
#if defined(EENATIVE_SIMD)
    column col;
    col.base = scratch;
    col.n4 = (size_t)op->in_depth & ~(size_t)3;
    col.rest = op->in_depth - col.n4;
    col.lanes = 1;
    col.lane = 0;
    col_put(&col, 0, x, op->in_depth, op->input_offset);
    dot_channels(scratch, op->weights, op->in_depth, op->bias, op->mult, op->shift, op->per_channel, op->out_depth,
                 op->output_offset, op->act_min, op->act_max, out);
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

void een_max_pool_s8(const een_pool *op, const int8_t *input, int8_t *output) { pool(op, input, output, 0); }

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

void een_add_s8(const een_add *op, const int8_t *input1, const int8_t *input2, int8_t *output) {
  uint32_t i;
  for (i = 0; i < op->size; ++i) {
    const int32_t a = (int32_t)((uint32_t)(input1[i] + op->input1_offset) << op->left_shift);
    const int32_t b = (int32_t)((uint32_t)(input2[i] + op->input2_offset) << op->left_shift);
    const int32_t sum = een_requantize(a, op->input1_mult, op->input1_shift) +
                        een_requantize(b, op->input2_mult, op->input2_shift);
    output[i] = finish(sum, op->output_mult, op->output_shift, op->output_offset, op->act_min, op->act_max);
  }
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
        sum += rounding_shift_right(exp_negative(een_requantize(diff, op->mult, op->left_shift)), 12);
      }
    }
    headroom = leading_zeros((uint32_t)sum); /* sum >= exp(0): the row maximum's term */
    scale = reciprocal_one_plus((int32_t)(((uint32_t)sum << headroom) - 0x80000000u));
    for (c = 0; c < op->depth; ++c) {
      const int32_t diff = x[c] - top;
      int32_t v = -128;
      if (diff >= op->diff_min) {
        const int32_t e = exp_negative(een_requantize(diff, op->mult, op->left_shift));
        v = rounding_shift_right(doubling_high_mul(scale, e), 12 - headroom + 31 - 8) - 128;
      }
      out[c] = (int8_t)clamp(v, -128, 127);
    }
  }
}
