/* libFuzzer harness for firmware/lib/eeproto: the streaming frame reader and the payload decoder.
 *
 * Build and run (benchmarks/fuzz_eeproto.sh does both, for a bounded time):
 *   make -C firmware fuzz            clang -fsanitize=fuzzer,address,undefined
 *
 * The first input byte picks a mode:
 *   even: the rest is raw wire bytes, pushed into an eep_reader (framing, COBS, CRC, overflow);
 *   odd:  the rest is a packet (header + payload) that the harness seals with its correct CRC and
 *         COBS-encodes before pushing it, so that the fuzzer reaches the header and payload checks
 *         that a random CRC almost never lets through.
 * For every frame the reader accepts, the harness aborts unless: the stored CRC is the CRC of the
 * decoded header and payload; the payload is exactly what eep_pack_payload writes for the decoded
 * message (nothing accepted that the fields do not say); and eep_encode_frame of it is accepted
 * again by a fresh reader as the same type, request id and payload.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eeproto.h"

/* Two receive buffers: a small one (an MCU's, overflowing often) and one of the largest frame. */
#define SMALL_RX EEP_FRAME_BYTES(300u)
static uint8_t rx_small[SMALL_RX];
static uint8_t rx_large[EEP_MAX_FRAME];
static uint8_t wire[EEP_MAX_FRAME + 1];       /* re-encoded frames */
static uint8_t sealed_wire[EEP_MAX_FRAME + 2]; /* mode odd: the sealed input, with a leading 0x00 */
static uint8_t payload[EEP_MAX_PAYLOAD];
static uint8_t check_rx[EEP_MAX_FRAME];

static void require(int cond) {
  if (!cond) {
    abort();
  }
}

static uint32_t get_u32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* The frame just accepted by r (decoded in place in r->buf) must be exactly what its message says. */
static void check_accepted(const eep_reader *r, const eep_msg *m) {
  const uint8_t *packet = r->buf;
  size_t len = (size_t)(packet[4] | (packet[5] << 8)), i;
  int32_t n = eep_pack_payload(m, payload, sizeof payload);
  eep_reader again;
  eep_msg back;
  int32_t w;
  int got = 0;
  require(packet[0] == EEP_VERSION && packet[1] == m->type && len <= EEP_MAX_PAYLOAD);
  require((uint16_t)(packet[2] | (packet[3] << 8)) == m->request_id);
  require(eep_crc32(0, packet, EEP_HEADER_BYTES + len) == get_u32(packet + EEP_HEADER_BYTES + len));
  require(n >= 0 && (size_t)n == len && memcmp(payload, packet + EEP_HEADER_BYTES, len) == 0);
  w = eep_encode_frame(m->type, m->request_id, payload, (size_t)n, wire, sizeof wire);
  require(w > 0 && wire[w - 1] == 0 && w <= (int32_t)EEP_FRAME_BYTES((size_t)n));
  eep_reader_init(&again, check_rx, sizeof check_rx);
  for (i = 0; i < (size_t)w; ++i) {
    int st = eep_reader_push(&again, wire[i], &back);
    require(i + 1 < (size_t)w ? (st == 0 && wire[i] != 0) : st == 1);
    got = st == 1;
  }
  require(got && back.type == m->type && back.request_id == m->request_id);
  require(memcmp(check_rx + EEP_HEADER_BYTES, payload, len) == 0);
}

static void push_all(eep_reader *r, const uint8_t *data, size_t size) {
  size_t i;
  eep_msg m;
  for (i = 0; i < size; ++i) {
    int st = eep_reader_push(r, data[i], &m);
    require(st <= 1 && st >= EEP_ERR_OVERFLOW);
    if (st == 1) {
      check_accepted(r, &m);
    }
  }
}

/* Seal a packet with its CRC and COBS-encode it into sealed_wire (with a leading and a trailing 0x00). */
static size_t seal(const uint8_t *packet, size_t size) {
  static uint8_t sealed[EEP_MAX_PACKET];
  size_t i, o = 2, code_at = 1;
  uint8_t code = 1;
  uint32_t crc;
  if (size > EEP_MAX_PACKET - EEP_CRC_BYTES) {
    size = EEP_MAX_PACKET - EEP_CRC_BYTES;
  }
  memcpy(sealed, packet, size);
  crc = eep_crc32(0, packet, size);
  for (i = 0; i < 4; ++i) {
    sealed[size + i] = (uint8_t)(crc >> (8 * i));
  }
  size += 4;
  sealed_wire[0] = 0;
  for (i = 0; i < size; ++i) {
    if (sealed[i]) {
      sealed_wire[o++] = sealed[i];
      code++;
    }
    if (!sealed[i] || code == 0xFF) {
      sealed_wire[code_at] = code;
      code_at = o++;
      code = 1;
    }
  }
  sealed_wire[code_at] = code;
  sealed_wire[o++] = 0;
  return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  eep_reader small, large;
  if (size == 0) {
    return 0;
  }
  eep_reader_init(&small, rx_small, sizeof rx_small);
  eep_reader_init(&large, rx_large, sizeof rx_large);
  if (data[0] & 1u) {
    size_t n = seal(data + 1, size - 1);
    push_all(&small, sealed_wire, n);
    push_all(&large, sealed_wire, n);
  } else {
    push_all(&small, data + 1, size - 1);
    push_all(&large, data + 1, size - 1);
  }
  return 0;
}
