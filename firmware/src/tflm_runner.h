// The TFLite Micro seam of the firmware: runs one device slice of the generated model.
#ifndef EEFW_TFLM_RUNNER_H_
#define EEFW_TFLM_RUNNER_H_

#include <stdint.h>

#include "eecore.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * eec_io.run_slice for the device slices of ee_model.h. The first call for slice `slice` builds
 * its tflite::MicroInterpreter and allocates its tensors in the one shared arena of EE_ARENA_BYTES
 * (one allocator for all slices: their persistent data side by side, their activations sharing the
 * rest); every call copies `input` into it, invokes it and copies its logits and trunk (found by
 * shape, not by output position) into `out`. Returns 0, or -1 when the slice index, the flatbuffer,
 * the arena, an op or a tensor shape does not match the generated header (TFLM says why through
 * DebugLog). `user` is unused. Not re-entrant.
 */
int eefw_run_slice(void *user, int slice, const int8_t *input, eec_slice_out *out);

#ifdef __cplusplus
}
#endif

#endif  // EEFW_TFLM_RUNNER_H_
