// The TFLite Micro seam: every device slice keeps its interpreter in one shared arena. See tflm_runner.h.
#include "tflm_runner.h"

#include <string.h>

#include <new>

#include "ee_model.h"
#include "tflm_mean.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

alignas(16) uint8_t g_arena[EE_ARENA_BYTES];
// One allocator for all slices (TFLM's multi-tenant use): each interpreter's persistent data stacks up in
// the arena's tail, their activations share its head. EE_ARENA_BYTES is sized for that by the converter.
tflite::MicroAllocator* g_allocator = nullptr;
// The slices' interpreters, built on first use in static storage (no heap, no global constructor).
alignas(tflite::MicroInterpreter) uint8_t g_storage[EE_DEVICE_SLICES][sizeof(tflite::MicroInterpreter)];
tflite::MicroInterpreter* g_interpreters[EE_DEVICE_SLICES];

// The library's kernels, but MEAN as the verifying interpreter computes it (tflm_mean.h).
class Resolver : public tflite::MicroMutableOpResolver<EE_NUM_OPS> {
 public:
  const TfLiteRegistration* FindOp(tflite::BuiltinOperator op) const override {
    const TfLiteRegistration* registered = MicroMutableOpResolver::FindOp(op);
    return registered != nullptr && op == tflite::BuiltinOperator_MEAN ? eefw_mean_registration() : registered;
  }
  using MicroMutableOpResolver::FindOp;
};

// The ops of all device slices, registered on first use (no global constructor).
const tflite::MicroOpResolver& Ops() {
  static Resolver resolver;
  static bool registered = false;
  if (!registered) {
    EE_REGISTER_OPS(resolver);
    registered = true;
  }
  return resolver;
}

size_t InputBytes(int slice) { return slice == 0 ? EEC_INPUT_BYTES : ee_slices[slice - 1].trunk_bytes; }

// Copies the interpreter's outputs into `out`: the logits are the (1, EE_NUM_CLASSES) tensor, the
// trunk the one of ee_slices[slice].trunk_bytes (converters do not keep the output order).
int CopyOutputs(tflite::MicroInterpreter& interpreter, int slice, eec_slice_out* out) {
  const TfLiteTensor* logits = nullptr;
  const TfLiteTensor* trunk = nullptr;
  const unsigned int trunk_bytes = ee_slices[slice].trunk_bytes;
  for (size_t i = 0; i < interpreter.outputs_size(); ++i) {
    const TfLiteTensor* t = interpreter.output(i);
    if (t == nullptr || t->type != kTfLiteInt8) {
      return -1;
    }
    if (t->dims->size == 2 && t->bytes == EE_NUM_CLASSES) {
      logits = t;
    } else if (trunk_bytes != 0 && t->bytes == trunk_bytes && t->dims->size <= static_cast<int>(EEP_MAX_RANK)) {
      trunk = t;
    }
  }
  if (logits == nullptr || (trunk_bytes != 0 && trunk == nullptr)) {
    return -1;
  }
  memcpy(out->logits, logits->data.int8, EE_NUM_CLASSES);
  if (trunk != nullptr) {
    memcpy(out->trunk, trunk->data.int8, trunk_bytes);
    out->trunk_rank = static_cast<uint8_t>(trunk->dims->size);
    for (int d = 0; d < trunk->dims->size; ++d) {
      out->trunk_dims[d] = static_cast<uint16_t>(trunk->dims->data[d]);
    }
  }
  return 0;
}

// Slice `slice`'s interpreter with its tensors allocated: built on the first call, then reused; nullptr if
// the flatbuffer or the arena does not fit (it stays so: the arena is not given back).
tflite::MicroInterpreter* Interpreter(int slice) {
  if (g_interpreters[slice] != nullptr) {
    return g_interpreters[slice];
  }
  const tflite::Model* model = tflite::GetModel(ee_slices[slice].tflite);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    return nullptr;
  }
  if (g_allocator == nullptr) {
    g_allocator = tflite::MicroAllocator::Create(g_arena, sizeof g_arena);
    if (g_allocator == nullptr) {
      return nullptr;
    }
  }
  tflite::MicroInterpreter* interpreter = new (g_storage[slice]) tflite::MicroInterpreter(model, Ops(), g_allocator);
  if (interpreter->AllocateTensors() != kTfLiteOk || interpreter->inputs_size() != 1) {
    return nullptr;
  }
  g_interpreters[slice] = interpreter;
  return interpreter;
}

}  // namespace

int eefw_run_slice(void* user, int slice, const int8_t* input, eec_slice_out* out) {
  (void)user;
  if (slice < 0 || slice >= EE_DEVICE_SLICES) {
    return -1;
  }
  tflite::MicroInterpreter* interpreter = Interpreter(slice);
  if (interpreter == nullptr) {
    return -1;
  }
  TfLiteTensor* in = interpreter->input(0);
  if (in == nullptr || in->type != kTfLiteInt8 || in->bytes != InputBytes(slice)) {
    return -1;
  }
  memcpy(in->data.int8, input, in->bytes);
  if (interpreter->Invoke() != kTfLiteOk) {
    return -1;
  }
  return CopyOutputs(*interpreter, slice, out);
}
