/* The native seam: see native_runner.h. */
#include "native_runner.h"

#include <stddef.h>

#include "ee_native.h"

#if EE_NATIVE_SLICES != EE_DEVICE_SLICES
#error "ee_native.h and ee_model.h come from different builds: rebuild with --runtime native"
#endif

int eefw_native_run_slice(void *user, int slice, const int8_t *input, eec_slice_out *out) {
  uint8_t d;
  (void)user;
  if (out == NULL || slice < 0 || slice >= EE_NATIVE_SLICES) {
    return -1;
  }
  if (ee_native_run_slice(slice, input, out->logits, out->trunk) != 0) {
    return -1;
  }
  out->trunk_rank = ee_native_trunk_rank[slice];
  for (d = 0; d < out->trunk_rank && d < EEP_MAX_RANK; ++d) {
    out->trunk_dims[d] = ee_native_trunk_dims[slice][d];
  }
  return 0;
}
