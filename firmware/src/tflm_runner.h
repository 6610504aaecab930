// The TFLite Micro seam of the firmware: runs one device slice of the generated model.
#ifndef EEFW_TFLM_RUNNER_H_
#define EEFW_TFLM_RUNNER_H_

#include <stdint.h>

#include "eecore.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * eec_io.run_slice for the device slices of ee_model.h. Each call builds slice `slice`'s
 * tflite::MicroInterpreter in the one shared arena of EE_ARENA_BYTES, copies `input` into it,
 * invokes it, copies its logits and trunk (found by shape, not by output position) into `out`,
 * and destroys it again. Returns 0, or -1 when the flatbuffer, the arena, an op or a tensor
 * shape does not match the generated header (TFLM says why through DebugLog). `user` is unused.
 */
int eefw_run_slice(void *user, int slice, const int8_t *input, eec_slice_out *out);

#ifdef __cplusplus
}
#endif

#endif  // EEFW_TFLM_RUNNER_H_
