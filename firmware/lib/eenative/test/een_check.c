/*
 * Runs the native device slices of a build on a stream of quantized inputs and writes every slice's
 * logits and trunk, for comparison with TFLite Micro (tests/test_native.py, benchmarks/native_exactness.py);
 * with -DEEN_CHECK_TFLM the firmware's TFLite Micro slices instead (benchmarks/tflm_exactness.py).
 *
 * Input: int8 images of EE_INPUT_H x W x C bytes, back to back. Output per image and device slice k:
 * EE_NUM_CLASSES logits, then ee_slices[k].trunk_bytes trunk values. Each slice's input is the
 * previous slice's trunk, as in the firmware. Exit status 0, or 1 when a slice fails or reports a
 * trunk shape that does not hold ee_slices[k].trunk_bytes values.
 *
 * Host: een_check < inputs > outputs. Cortex-M under QEMU (EEN_SEMIHOSTING, een_qemu.c): reads
 * een_in.bin and writes een_out.bin in QEMU's working directory through semihosting, and with
 * EEN_PROFILE een_prof.txt: "slice op ticks" per kernel (SysTick ticks summed over all images).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ee_model.h"
#if defined(EEN_CHECK_TFLM)
#include "tflm_runner.h" /* the firmware's TFLite Micro seam instead (benchmarks/tflm_exactness.py) */
#define RUN_SLICE eefw_run_slice
#else
#include "native_runner.h"
#define RUN_SLICE eefw_native_run_slice
#endif

#define INPUT_BYTES ((size_t)EE_INPUT_H * EE_INPUT_W * EE_INPUT_C)
#define ACT_BYTES (INPUT_BYTES > EE_MAX_TRUNK_BYTES ? INPUT_BYTES : (size_t)EE_MAX_TRUNK_BYTES)

/* The stream seams: een_io_host.c (stdio) or een_qemu.c (semihosting). */
int een_io_open(void);
size_t een_io_read(void *buf, size_t n);
int een_io_write(const void *buf, size_t n);
void een_io_close(int status);

static int8_t act[2][ACT_BYTES];

/* The runner's trunk shape must describe exactly ee_slices[k].trunk_bytes values (none for the last slice). */
static int shape_ok(int k, const eec_slice_out *out) {
  size_t n = out->trunk_rank ? 1u : 0u;
  uint8_t d;
  for (d = 0; d < out->trunk_rank; ++d) {
    n *= out->trunk_dims[d];
  }
  return n == ee_slices[k].trunk_bytes;
}

int main(void) {
  int status = 0;
  if (een_io_open() != 0) {
    return 2;
  }
  while (status == 0 && een_io_read(act[0], INPUT_BYTES) == INPUT_BYTES) {
    int k;
    for (k = 0; k < EE_DEVICE_SLICES; ++k) {
      int8_t logits[EE_NUM_CLASSES];
      eec_slice_out out;
      memset(&out, 0, sizeof out);
      out.logits = logits;
      out.trunk = act[(k + 1) % 2];
      if (RUN_SLICE(NULL, k, act[k % 2], &out) != 0 || !shape_ok(k, &out) ||
          een_io_write(logits, sizeof logits) != 0 ||
          een_io_write(out.trunk, ee_slices[k].trunk_bytes) != 0) {
        status = 1;
        break;
      }
    }
  }
  een_io_close(status);
  return status;
}
