/* The native seam of the firmware: runs one device slice with the converter's interpreter-free C. */
#ifndef EEFW_NATIVE_RUNNER_H
#define EEFW_NATIVE_RUNNER_H

#include <stdint.h>

#include "eecore.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * eec_io.run_slice for the device slices of ee_native.h (python -m converter build --runtime native):
 * runs slice `slice` on `input`, writes its logits and trunk into `out` and sets the trunk's rank and
 * dims. Returns 0, or -1 for a slice outside the model's device slices or missing buffers.
 * `user` is unused.
 */
int eefw_native_run_slice(void *user, int slice, const int8_t *input, eec_slice_out *out);

#ifdef __cplusplus
}
#endif

#endif /* EEFW_NATIVE_RUNNER_H */
