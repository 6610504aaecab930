/*
 * een_requantize on a stream of (x, mult, shift) int32 triples, one int32 result per triple
 * (tests/test_native.py compares it with a Python model of TFLite's MultiplyByQuantizedMultiplier).
 * Linked with een_io_host.c (stdin/stdout) or een_io_qemu.c (een_in.bin/een_out.bin under QEMU).
 */
#include <stddef.h>
#include <stdint.h>

#include "eenative.h"

int een_io_open(void);
size_t een_io_read(void *buf, size_t n);
int een_io_write(const void *buf, size_t n);
void een_io_close(int status);

int main(void) {
  int32_t in[3 * 256];
  int32_t out[256];
  size_t got;
  int status = 0;
  if (een_io_open() != 0) {
    return 2;
  }
  while (status == 0 && (got = een_io_read(in, sizeof in) / (3 * sizeof(int32_t))) > 0) {
    size_t i;
    for (i = 0; i < got; ++i) {
      out[i] = een_requantize(in[3 * i], in[3 * i + 1], in[3 * i + 2]);
    }
    status = een_io_write(out, got * sizeof(int32_t));
  }
  een_io_close(status);
  return status;
}
