/* Checks firmware/lib/eeproto against the golden vectors (tests/data/protocol/vectors.txt):
 * every frame decodes to the same canonical text as the Python implementation, and every
 * valid frame re-encodes to the same bytes. Usage: eeproto_vectors VECTORS_FILE */
#include <stdio.h>
#include <string.h>

#include "eeproto.h"

#define MAX_LINE 80000

static char line[MAX_LINE];
static uint8_t wire[MAX_LINE / 2];
static uint8_t rx[EEP_MAX_FRAME];
static uint8_t payload[EEP_MAX_PAYLOAD];
static uint8_t reencoded[EEP_MAX_FRAME];

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

static int append(char *out, size_t cap, size_t *len, const char *fmt_text) {
  size_t n = strlen(fmt_text);
  if (*len + n + 1 > cap) return -1;
  memcpy(out + *len, fmt_text, n + 1);
  *len += n;
  return 0;
}

static void str_field(char *dst, size_t cap, eep_str s) {
  size_t n = s.len < cap - 1 ? s.len : cap - 1;
  memcpy(dst, s.text, n);
  dst[n] = '\0';
}

/* The canonical text of tests/protocol_vectors.py:canonical. */
static void canonical(const eep_msg *m, char *out, size_t cap) {
  char part[512], text[300];
  size_t len = 0;
  unsigned i;
  uint32_t bits;
  out[0] = '\0';
  snprintf(part, sizeof part, "type=%u id=%u ", (unsigned)m->type, (unsigned)m->request_id);
  append(out, cap, &len, part);
  switch (m->type) {
    case EEP_HELLO:
      str_field(text, sizeof text, m->u.hello.board);
      snprintf(part, sizeof part, "fw=%u board=%s hash=", (unsigned)m->u.hello.fw_version, text);
      append(out, cap, &len, part);
      for (i = 0; i < 32; ++i) {
        snprintf(part, sizeof part, "%02x", m->u.hello.model_hash[i]);
        append(out, cap, &len, part);
      }
      break;
    case EEP_HELLO_ACK:
      str_field(text, sizeof text, m->u.hello_ack.reason);
      snprintf(part, sizeof part, "accepted=%u reason=%s", (unsigned)m->u.hello_ack.accepted, text);
      append(out, cap, &len, part);
      break;
    case EEP_INFER:
      snprintf(part, sizeof part, "shape=%ux%ux%u crc=%08lx", (unsigned)m->u.infer.h, (unsigned)m->u.infer.w,
               (unsigned)m->u.infer.c,
               (unsigned long)eep_crc32(0, m->u.infer.pixels, (size_t)m->u.infer.h * m->u.infer.w * m->u.infer.c));
      append(out, cap, &len, part);
      break;
    case EEP_OFFLOAD:
      snprintf(part, sizeof part, "exit=%u shape=", (unsigned)m->u.offload.exit);
      append(out, cap, &len, part);
      for (i = 0; i < m->u.offload.rank; ++i) {
        snprintf(part, sizeof part, i ? "x%u" : "%u", (unsigned)m->u.offload.dims[i]);
        append(out, cap, &len, part);
      }
      memcpy(&bits, &m->u.offload.scale, 4);
      snprintf(part, sizeof part, " scale=%08lx zp=%d time=%lu energy=%lu deadline=%lu crc=%08lx", (unsigned long)bits,
               (int)m->u.offload.zero_point, (unsigned long)m->u.offload.time_spent_us,
               (unsigned long)m->u.offload.energy_spent_uj, (unsigned long)m->u.offload.deadline_left_us,
               (unsigned long)eep_crc32(0, (const uint8_t *)m->u.offload.tensor, m->u.offload.tensor_bytes));
      append(out, cap, &len, part);
      break;
    case EEP_RESULT:
      snprintf(part, sizeof part, "class=%u conf=%u exit=%u tier=%u fallback=%u bps=%lu wait=%lu",
               (unsigned)m->u.result.label, (unsigned)m->u.result.confidence_q15, (unsigned)m->u.result.exit,
               (unsigned)m->u.result.tier, (unsigned)m->u.result.fallback, (unsigned long)m->u.result.link_bps,
               (unsigned long)m->u.result.edge_wait_us);
      append(out, cap, &len, part);
      break;
    case EEP_ERROR:
      str_field(text, sizeof text, m->u.error.message);
      snprintf(part, sizeof part, "code=%u message=%s", (unsigned)m->u.error.code, text);
      append(out, cap, &len, part);
      break;
    case EEP_PING:
    case EEP_PONG:
      snprintf(part, sizeof part, "ts=%lu", (unsigned long)m->u.ping.timestamp_us);
      append(out, cap, &len, part);
      break;
    default: /* EEP_TELEMETRY */
      append(out, cap, &len, "slices=");
      for (i = 0; i < m->u.telemetry.count; ++i) {
        const uint8_t *e = m->u.telemetry.entries + 5u * i;
        unsigned long us = (unsigned long)e[1] | ((unsigned long)e[2] << 8) | ((unsigned long)e[3] << 16) |
                           ((unsigned long)e[4] << 24);
        snprintf(part, sizeof part, i ? ",%u:%lu" : "%u:%lu", (unsigned)e[0], us);
        append(out, cap, &len, part);
      }
      break;
  }
}

int main(int argc, char **argv) {
  FILE *f;
  eep_reader reader;
  eep_msg msg;
  unsigned passed = 0, failed = 0, lineno = 0;
  if (argc != 2 || !(f = fopen(argv[1], "r"))) {
    fprintf(stderr, "usage: %s tests/data/protocol/vectors.txt\n", argv[0]);
    return 2;
  }
  eep_reader_init(&reader, rx, sizeof rx);
  while (fgets(line, sizeof line, f)) {
    char *tab = strchr(line, '\t'), got[2048];
    size_t n = 0, i;
    int result = 0, ok;
    ++lineno;
    if (!tab) continue;
    *tab = '\0';
    tab[1 + strcspn(tab + 1, "\r\n")] = '\0';
    for (i = 0; line[i] && line[i + 1]; i += 2) wire[n++] = (uint8_t)(hexval(line[i]) * 16 + hexval(line[i + 1]));
    for (i = 0; i < n && result == 0; ++i) result = eep_reader_push(&reader, wire[i], &msg);
    if (result == 1) {
      int32_t plen = eep_pack_payload(&msg, payload, sizeof payload);
      int32_t flen = plen < 0 ? plen : eep_encode_frame(msg.type, msg.request_id, payload, (size_t)plen, reencoded,
                                                          sizeof reencoded);
      canonical(&msg, got, sizeof got);
      ok = strcmp(got, tab + 1) == 0 && flen == (int32_t)n && memcmp(reencoded, wire, n) == 0;
    } else {
      snprintf(got, sizeof got, "drop %d", result);
      ok = strcmp(got, tab + 1) == 0;
    }
    if (ok) {
      ++passed;
    } else {
      ++failed;
      printf("vector %u: expected '%s', got '%s'\n", lineno, tab + 1, got);
    }
  }
  fclose(f);
  printf("%u passed, %u failed\n", passed, failed);
  return failed ? 1 : 0;
}
