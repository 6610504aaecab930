/**
 * @file eenative.h
 * @brief Interpreter-free int8 kernels with TFLite's integer arithmetic (batch 1, NHWC).
 *
 * Every kernel computes what TFLite Micro's reference int8 kernel computes, bit for bit: int32
 * accumulation of (input + input_offset) x weight, the per-channel or per-tensor fixed-point
 * multiplier with TFLite's double rounding (een_requantize), the output zero point, then the fused
 * activation's clamp. The converter (converter/native*.py) precomputes every parameter from the
 * .tflite flatbuffer and plans all buffers at build time: no allocation, no interpreter.
 *
 * Build with -DEENATIVE_SIMD on a core with the DSP extension (Cortex-M4/M7: ACLE __smlad, __sxtb16,
 * __ssub8/__sel) for the SIMD convolution, fully-connected, ADD and max-pooling paths. Their scratch
 * (planned in the arena by the converter, word-aligned, ignored by the plain C path): for a patch
 * of n values (conv: kh x kw x in.c, fully connected: in_depth) a two-lane int16 column of
 * 4 ceil(n / 4) words, plus ceil(n / 4) words more when in.c is not a multiple of 4 (the patch is
 * staged as int8 first; fully connected always stages); for ADD two 256-entry int32 tables (2 KB).
 * Weight arrays (conv, fully connected) end with zeros up to a whole word past their last row, since
 * the SIMD dot products read every row as ceil(n / 4) words. Without EENATIVE_SIMD the kernels are
 * plain C. Both paths produce identical outputs.
 */
#ifndef EENATIVE_H
#define EENATIVE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Height, width and channels of a batch-1 NHWC tensor. */
typedef struct {
  uint16_t h, w, c;
} een_dims;

/** CONV_2D, per-channel: weights [out.c][kh][kw][in.c], then zeros to a whole word (see above). */
typedef struct {
  een_dims in, out;
  uint8_t kh, kw, stride_h, stride_w, dil_h, dil_w;
  uint8_t pad_h, pad_w;   /**< leading padding (TFLite's SAME rule; 0 for VALID) */
  int32_t input_offset;   /**< minus the input zero point */
  int32_t output_offset;  /**< the output zero point */
  int32_t act_min, act_max;
  const int8_t *weights;
  const int32_t *bias;    /**< [out.c] or NULL */
  const int32_t *mult;    /**< [out.c] fixed-point multipliers (Q31) */
  const int32_t *shift;   /**< [out.c] exponents: > 0 left, < 0 right */
} een_conv;

/** DEPTHWISE_CONV_2D, per-channel: weights [kh][kw][out.c], out.c = in.c x depth_multiplier. */
typedef struct {
  een_dims in, out;
  uint8_t kh, kw, stride_h, stride_w, dil_h, dil_w, pad_h, pad_w;
  uint16_t depth_multiplier;
  int32_t input_offset, output_offset, act_min, act_max;
  const int8_t *weights;
  const int32_t *bias, *mult, *shift;
} een_depthwise;

/** FULLY_CONNECTED: weights [out_depth][in_depth] (then zeros to a whole word), one multiplier (per-tensor)
    or out_depth of them. */
typedef struct {
  uint16_t in_depth, out_depth, batches;
  uint8_t per_channel;    /**< 0: mult[0]/shift[0] for every output */
  int32_t input_offset, output_offset, act_min, act_max;
  const int8_t *weights;
  const int32_t *bias, *mult, *shift;
} een_fc;

/** MAX_POOL_2D and AVERAGE_POOL_2D. */
typedef struct {
  een_dims in, out;
  uint8_t kh, kw, stride_h, stride_w, pad_h, pad_w;
  int32_t act_min, act_max;
} een_pool;

/** PAD of H, W and C (batch padding must be 0) with a constant int8 value. */
typedef struct {
  een_dims in, out;
  uint16_t before_h, before_w, before_c;
  int8_t value;
} een_pad;

/**
 * MEAN over H and W: out (1, 1, 1, in.c) = requantize(sum - H W zero_point) with the multiplier
 * of input_scale / output_scale / (H W) folded as TFLite folds it (converter/native_graph.py).
 */
typedef struct {
  een_dims in;
  int32_t input_zero_point, output_zero_point, mult, shift;
} een_mean;

/** ADD of two tensors of the same shape (no broadcasting), TFLite's int8 rescaling. */
typedef struct {
  uint32_t size;
  int32_t input1_offset, input2_offset, output_offset;
  int32_t left_shift;
  int32_t input1_mult, input1_shift, input2_mult, input2_shift, output_mult, output_shift;
  int32_t act_min, act_max;
} een_add;

/**
 * SOFTMAX over the last axis, int8 in, int8 out (scale 1/256, zero point -128): TFLite's fixed-point
 * exp and reciprocal (Q5.26 differences, Q12.19 sum of exponentials, Newton-Raphson reciprocal).
 */
typedef struct {
  uint32_t rows;
  uint16_t depth;
  int32_t mult, left_shift; /**< beta x input_scale x 2^26 as multiplier and left shift */
  int32_t diff_min;         /**< differences from the row maximum below this give 0 */
} een_softmax;

/**
 * x * mult * 2^shift with TFLite's rounding (MultiplyByQuantizedMultiplier: doubling high mul, then rounding
 * shift), computed as CMSIS-NN does it: (x' mult + 2^30) >> 31 in one 64-bit multiply-accumulate, the same
 * bits for every mult != INT32_MIN. The kernels inline it.
 */
int32_t een_requantize(int32_t x, int32_t mult, int32_t shift);

void een_conv2d_s8(const een_conv *op, const int8_t *input, int8_t *output, void *scratch);
void een_depthwise_s8(const een_depthwise *op, const int8_t *input, int8_t *output);
void een_fc_s8(const een_fc *op, const int8_t *input, int8_t *output, void *scratch);
void een_max_pool_s8(const een_pool *op, const int8_t *input, int8_t *output);
void een_avg_pool_s8(const een_pool *op, const int8_t *input, int8_t *output);
void een_pad_s8(const een_pad *op, const int8_t *input, int8_t *output);
void een_mean_s8(const een_mean *op, const int8_t *input, int8_t *output);
void een_add_s8(const een_add *op, const int8_t *input1, const int8_t *input2, int8_t *output, void *scratch);
void een_softmax_s8(const een_softmax *op, const int8_t *input, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* EENATIVE_H */
