// MEAN over height and width, int8, as the TFLite Micro the converter verifies against computes it.
#ifndef EEFW_TFLM_MEAN_H_
#define EEFW_TFLM_MEAN_H_

#include "tensorflow/lite/c/common.h"

/**
 * The kernel the firmware's op resolver hands out for MEAN. Chirale_TensorFLowLite 2.0.0 (the
 * Arduino library platformio.ini pins) computes an int8 MEAN whose input and output quantization
 * differ in float, so its outputs are one step off the PyPI tflite-micro's integer result for
 * some inputs; this kernel is that integer result: the input scale over the output scale with
 * 1 / (H * W) folded into one fixed-point multiplier, applied to the channel's sum. Only the
 * int8 mean over axes 1 and 2 of an NHWC tensor (the converter's global average pooling);
 * Prepare fails on any other MEAN.
 */
const TfLiteRegistration* eefw_mean_registration();

#endif  // EEFW_TFLM_MEAN_H_
