/*
 * een_check's streams on QEMU's mps2-an386 (linked with firmware/qemu/startup.c and board.c):
 * een_in.bin and een_out.bin in QEMU's working directory through Arm semihosting.
 *
 * With -DEEN_PROFILE and -include een_profile.h (the hook in ee_native.c) SysTick, which
 * QEMU advances once per 40 instructions under -icount shift=0, is read after every kernel; the
 * ticks of each (slice, op), summed over all inputs, go to een_prof.txt as "slice op ticks" lines.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(EEN_PROFILE)
#include "ee_native.h"
#endif

int een_io_open(void);
size_t een_io_read(void *buf, size_t n);
int een_io_write(const void *buf, size_t n);
void een_io_close(int status);

enum { SYS_OPEN = 0x01, SYS_CLOSE = 0x02, SYS_WRITE = 0x05, SYS_READ = 0x06 };
enum { MODE_READ_BINARY = 1, MODE_WRITE_BINARY = 5 };

static int32_t in_file = -1;
static int32_t out_file = -1;

static int32_t semihost(uint32_t op, const uint32_t *block) {
  register uint32_t r0 __asm__("r0") = op;
  register const uint32_t *r1 __asm__("r1") = block;
  __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return (int32_t)r0;
}

static int32_t open_file(const char *name, uint32_t mode) {
  uint32_t block[3];
  block[0] = (uint32_t)(uintptr_t)name;
  block[1] = mode;
  block[2] = (uint32_t)strlen(name);
  return semihost(SYS_OPEN, block);
}

/* SYS_READ / SYS_WRITE return the number of bytes NOT transferred. */
static size_t transfer(uint32_t op, int32_t file, const void *buf, size_t n) {
  uint32_t block[3];
  block[0] = (uint32_t)file;
  block[1] = (uint32_t)(uintptr_t)buf;
  block[2] = (uint32_t)n;
  return n - (size_t)semihost(op, block);
}

#if defined(EEN_PROFILE)
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define MAX_OPS 64

static uint32_t op_ticks[EE_NATIVE_SLICES][MAX_OPS];
static uint32_t last;

void een_op_done(int slice, int op) {
  const uint32_t now = SYST_CVR;
  if (op < MAX_OPS) {
    op_ticks[slice][op] += (last - now) & 0xFFFFFFu; /* SysTick counts down over 24 bits */
  }
  last = SYST_CVR;
}

static void profile_start(void) {
  SYST_RVR = 0xFFFFFFu;
  SYST_CVR = 0;
  SYST_CSR = 5u; /* enabled, processor clock, no interrupt */
}

/* Re-arms the reference before each read so that file I/O is not counted. */
static void profile_mark(void) { last = SYST_CVR; }

static void profile_write(void) {
  char text[48];
  int32_t file = open_file("een_prof.txt", MODE_WRITE_BINARY);
  int s;
  int j;
  for (s = 0; file >= 0 && s < EE_NATIVE_SLICES; ++s) {
    for (j = 0; j < MAX_OPS; ++j) {
      char *p = text + sizeof text;
      uint32_t v = op_ticks[s][j];
      if (v == 0) {
        continue;
      }
      *--p = '\n';
      do {
        *--p = (char)('0' + v % 10u);
        v /= 10u;
      } while (v != 0);
      *--p = ' ';
      *--p = (char)('0' + j % 10);
      if (j >= 10) {
        *--p = (char)('0' + j / 10);
      }
      *--p = ' ';
      *--p = (char)('0' + s);
      (void)transfer(SYS_WRITE, file, p, (size_t)(text + sizeof text - p));
    }
  }
  if (file >= 0) {
    (void)semihost(SYS_CLOSE, (const uint32_t *)&file);
  }
}
#else
static void profile_start(void) {}
static void profile_mark(void) {}
static void profile_write(void) {}
#endif

int een_io_open(void) {
  in_file = open_file("een_in.bin", MODE_READ_BINARY);
  out_file = open_file("een_out.bin", MODE_WRITE_BINARY);
  profile_start();
  return in_file < 0 || out_file < 0 ? -1 : 0;
}

size_t een_io_read(void *buf, size_t n) {
  const size_t got = transfer(SYS_READ, in_file, buf, n);
  profile_mark();
  return got;
}

int een_io_write(const void *buf, size_t n) {
  const int ok = transfer(SYS_WRITE, out_file, buf, n) == n ? 0 : -1;
  profile_mark();
  return ok;
}

void een_io_close(int status) {
  (void)status;
  (void)semihost(SYS_CLOSE, (const uint32_t *)&in_file);
  (void)semihost(SYS_CLOSE, (const uint32_t *)&out_file);
  profile_write();
}
