// MEAN over height and width for TFLite Micro, integer only. See tflm_mean.h.
#include "tflm_mean.h"

#include <stdint.h>

#include "tensorflow/lite/kernels/internal/common.h"
#include "tensorflow/lite/kernels/internal/quantization_util.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

struct MeanData {
  int32_t multiplier;
  int shift;
  int32_t input_zero_point;
  int32_t output_zero_point;
};

void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  (void)buffer;
  (void)length;
  return context->AllocatePersistentBuffer(context, sizeof(MeanData));
}

int BitLength(uint32_t v) {
  int n = 0;
  for (; v != 0; v >>= 1) {
    ++n;
  }
  return n;
}

// True for a constant axis tensor naming exactly axes 1 and 2.
bool OverHeightAndWidth(const TfLiteTensor* axis) {
  if (axis == nullptr || axis->type != kTfLiteInt32 || axis->data.i32 == nullptr || axis->dims->size != 1 || axis->dims->data[0] != 2) {
    return false;
  }
  const int32_t a = axis->data.i32[0];
  const int32_t b = axis->data.i32[1];
  return (a == 1 && b == 2) || (a == 2 && b == 1);
}

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  tflite::MicroContext* micro = tflite::GetMicroContext(context);
  TfLiteTensor* input = micro->AllocateTempInputTensor(node, 0);
  TfLiteTensor* axis = micro->AllocateTempInputTensor(node, 1);
  TfLiteTensor* output = micro->AllocateTempOutputTensor(node, 0);
  TfLiteStatus status = kTfLiteError;
  if (input != nullptr && output != nullptr && input->type == kTfLiteInt8 && output->type == kTfLiteInt8 &&
      input->dims->size == 4 && OverHeightAndWidth(axis) && input->dims->data[1] * input->dims->data[2] > 0) {
    MeanData* data = static_cast<MeanData*>(node->user_data);
    const uint32_t count = static_cast<uint32_t>(input->dims->data[1] * input->dims->data[2]);
    int32_t multiplier;
    int shift;
    tflite::QuantizeMultiplier(static_cast<double>(input->params.scale) / static_cast<double>(output->params.scale),
                               &multiplier, &shift);
    // Fold 1 / count into the multiplier, keeping as many of its bits as the shift allows.
    int extra = BitLength(count) - 1;
    if (extra > 31 + shift) {
      extra = 31 + shift;
    }
    if (extra < 0) {
      extra = 0;
    }
    data->multiplier = static_cast<int32_t>((static_cast<int64_t>(multiplier) << extra) / count);
    data->shift = shift - extra;
    data->input_zero_point = input->params.zero_point;
    data->output_zero_point = output->params.zero_point;
    status = kTfLiteOk;
  } else {
    MicroPrintf("MEAN: only the int8 mean over axes 1 and 2 of an NHWC tensor is supported");
  }
  if (input != nullptr) micro->DeallocateTempTfLiteTensor(input);
  if (axis != nullptr) micro->DeallocateTempTfLiteTensor(axis);
  if (output != nullptr) micro->DeallocateTempTfLiteTensor(output);
  return status;
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  const MeanData* data = static_cast<const MeanData*>(node->user_data);
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, 0);
  TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, 0);
  const int8_t* in = tflite::micro::GetTensorData<int8_t>(input);
  int8_t* out = tflite::micro::GetTensorData<int8_t>(output);
  const int batches = input->dims->data[0];
  const int pixels = input->dims->data[1] * input->dims->data[2];
  const int channels = input->dims->data[3];
  for (int n = 0; n < batches; ++n) {
    for (int c = 0; c < channels; ++c) {
      int32_t acc = 0;
      for (int i = 0; i < pixels; ++i) {
        acc += in[(n * pixels + i) * channels + c];
      }
      acc -= data->input_zero_point * pixels;
      int32_t v = tflite::MultiplyByQuantizedMultiplier(acc, data->multiplier, data->shift) + data->output_zero_point;
      v = v < -128 ? -128 : (v > 127 ? 127 : v);
      out[n * channels + c] = static_cast<int8_t>(v);
    }
  }
  return kTfLiteOk;
}

}  // namespace

const TfLiteRegistration* eefw_mean_registration() {
  static TfLiteRegistration registration = tflite::micro::RegisterOp(Init, Prepare, Eval);
  registration.builtin_code = tflite::BuiltinOperator_MEAN;
  return &registration;
}
