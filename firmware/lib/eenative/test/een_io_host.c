/* een_check's streams on a host: stdin and stdout, binary. */
#include <stddef.h>
#include <stdio.h>

int een_io_open(void);
size_t een_io_read(void *buf, size_t n);
int een_io_write(const void *buf, size_t n);
void een_io_close(int status);

int een_io_open(void) { return 0; }

size_t een_io_read(void *buf, size_t n) { return fread(buf, 1, n, stdin); }

int een_io_write(const void *buf, size_t n) { return fwrite(buf, 1, n, stdout) == n ? 0 : -1; }

void een_io_close(int status) {
  (void)status;
  fflush(stdout);
}
