/* The framed serial protocol of docs/protocol.md. See eeproto.h. */
#include "eeproto.h"

#include <string.h>

/* CRC-32 (reflected 0xEDB88320), four bits at a time: 64 bytes of table instead of 1 KB. */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
    0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu, 0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};

uint32_t eep_crc32(uint32_t crc, const uint8_t *data, size_t n) {
  size_t i;
  crc = ~crc;
  for (i = 0; i < n; ++i) {
    crc = crc_nibble[(crc ^ data[i]) & 0x0Fu] ^ (crc >> 4);
    crc = crc_nibble[(crc ^ (uint32_t)(data[i] >> 4)) & 0x0Fu] ^ (crc >> 4);
  }
  return ~crc;
}

static void put_u16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}

static void put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t get_u32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* ---- payloads ---------------------------------------------------------------------- */

typedef struct {
  uint8_t *out;
  size_t cap, len;
  int err;
} writer;

static void w_bytes(writer *w, const void *src, size_t n) {
  if (w->err || n > w->cap - w->len) {
    w->err = 1;
    return;
  }
  if (n) {
    memcpy(w->out + w->len, src, n);
  }
  w->len += n;
}

static void w_u8(writer *w, uint8_t v) { w_bytes(w, &v, 1); }

static void w_u16(writer *w, uint16_t v) {
  uint8_t b[2];
  put_u16(b, v);
  w_bytes(w, b, 2);
}

static void w_u32(writer *w, uint32_t v) {
  uint8_t b[4];
  put_u32(b, v);
  w_bytes(w, b, 4);
}

static void w_str(writer *w, eep_str s) {
  w_u8(w, s.len);
  w_bytes(w, s.text, s.len);
}

int32_t eep_pack_payload(const eep_msg *m, uint8_t *out, size_t cap) {
  writer w;
  uint32_t bits, n = 1;
  uint8_t i;
  w.out = out;
  w.cap = cap;
  w.len = 0;
  w.err = 0;
  switch (m->type) {
    case EEP_HELLO:
      w_u16(&w, m->u.hello.fw_version);
      w_str(&w, m->u.hello.board);
      w_bytes(&w, m->u.hello.model_hash, 32);
      break;
    case EEP_HELLO_ACK:
      w_u8(&w, m->u.hello_ack.accepted);
      w_str(&w, m->u.hello_ack.reason);
      break;
    case EEP_INFER:
      w_u16(&w, m->u.infer.h);
      w_u16(&w, m->u.infer.w);
      w_u16(&w, m->u.infer.c);
      w_bytes(&w, m->u.infer.pixels, (size_t)m->u.infer.h * m->u.infer.w * m->u.infer.c);
      break;
    case EEP_OFFLOAD:
      if (m->u.offload.rank < 1 || m->u.offload.rank > EEP_MAX_RANK) {
        return EEP_ERR_PAYLOAD;
      }
      w_u8(&w, m->u.offload.exit);
      w_u8(&w, m->u.offload.rank);
      for (i = 0; i < m->u.offload.rank; ++i) {
        w_u16(&w, m->u.offload.dims[i]);
        n *= m->u.offload.dims[i];
      }
      if (n != m->u.offload.tensor_bytes) {
        return EEP_ERR_PAYLOAD;
      }
      memcpy(&bits, &m->u.offload.scale, 4);
      w_u32(&w, bits);
      w_u8(&w, (uint8_t)m->u.offload.zero_point);
      w_u32(&w, m->u.offload.time_spent_us);
      w_u32(&w, m->u.offload.energy_spent_uj);
      w_u32(&w, m->u.offload.deadline_left_us);
      w_bytes(&w, m->u.offload.tensor, n);
      break;
    case EEP_RESULT:
      w_u16(&w, m->u.result.label);
      w_u16(&w, m->u.result.confidence_q15);
      w_u8(&w, m->u.result.exit);
      w_u8(&w, m->u.result.tier);
      w_u8(&w, m->u.result.fallback ? 1u : 0u);
      w_u32(&w, m->u.result.link_bps);
      w_u32(&w, m->u.result.edge_wait_us);
      break;
    case EEP_ERROR:
      w_u16(&w, m->u.error.code);
      w_str(&w, m->u.error.message);
      break;
    case EEP_PING:
    case EEP_PONG:
      w_u32(&w, m->u.ping.timestamp_us);
      break;
    case EEP_TELEMETRY:
      w_u8(&w, m->u.telemetry.count);
      w_bytes(&w, m->u.telemetry.entries, (size_t)m->u.telemetry.count * 5u);
      break;
    default:
      return EEP_ERR_TYPE;
  }
  return w.err ? EEP_ERR_SPACE : (int32_t)w.len;
}

typedef struct {
  const uint8_t *p;
  size_t len, pos;
  int err;
} reader;

static const uint8_t *r_take(reader *r, size_t n) {
  const uint8_t *at = r->p + r->pos;
  if (r->err || n > r->len - r->pos) {
    r->err = 1;
    return NULL;
  }
  r->pos += n;
  return at;
}

static uint8_t r_u8(reader *r) {
  const uint8_t *b = r_take(r, 1);
  return b ? b[0] : 0;
}

static uint16_t r_u16(reader *r) {
  const uint8_t *b = r_take(r, 2);
  return b ? get_u16(b) : 0;
}

static uint32_t r_u32(reader *r) {
  const uint8_t *b = r_take(r, 4);
  return b ? get_u32(b) : 0;
}

/* A length-prefixed string; text that is not 7-bit ASCII makes the payload malformed. */
static eep_str r_str(reader *r) {
  eep_str s;
  uint8_t i;
  s.len = r_u8(r);
  s.text = (const char *)r_take(r, s.len);
  for (i = 0; s.text && i < s.len; ++i) {
    if ((uint8_t)s.text[i] > 0x7Fu) {
      r->err = 1;
    }
  }
  return s;
}

eep_status eep_unpack_payload(uint8_t type, const uint8_t *payload, size_t len, eep_msg *m) {
  reader r;
  uint32_t bits, n = 1;
  uint8_t i;
  r.p = payload;
  r.len = len;
  r.pos = 0;
  r.err = 0;
  m->type = type;
  switch (type) {
    case EEP_HELLO:
      m->u.hello.fw_version = r_u16(&r);
      m->u.hello.board = r_str(&r);
      m->u.hello.model_hash = r_take(&r, 32);
      break;
    case EEP_HELLO_ACK:
      m->u.hello_ack.accepted = r_u8(&r);
      m->u.hello_ack.reason = r_str(&r);
      if (m->u.hello_ack.accepted > 1) {
        return EEP_ERR_PAYLOAD;
      }
      break;
    case EEP_INFER:
      m->u.infer.h = r_u16(&r);
      m->u.infer.w = r_u16(&r);
      m->u.infer.c = r_u16(&r);
      m->u.infer.pixels = r_take(&r, (size_t)m->u.infer.h * m->u.infer.w * m->u.infer.c);
      break;
    case EEP_OFFLOAD:
      m->u.offload.exit = r_u8(&r);
      m->u.offload.rank = r_u8(&r);
      if (m->u.offload.rank < 1 || m->u.offload.rank > EEP_MAX_RANK) {
        return EEP_ERR_PAYLOAD;
      }
      for (i = 0; i < m->u.offload.rank; ++i) {
        m->u.offload.dims[i] = r_u16(&r);
        n *= m->u.offload.dims[i];
        if (n > EEP_MAX_PAYLOAD) {
          return EEP_ERR_PAYLOAD;
        }
      }
      bits = r_u32(&r);
      if (((bits >> 23) & 0xFFu) == 0xFFu) {
        return EEP_ERR_PAYLOAD; /* the scale is infinite or NaN */
      }
      memcpy(&m->u.offload.scale, &bits, 4);
      m->u.offload.zero_point = (int8_t)r_u8(&r);
      m->u.offload.time_spent_us = r_u32(&r);
      m->u.offload.energy_spent_uj = r_u32(&r);
      m->u.offload.deadline_left_us = r_u32(&r);
      m->u.offload.tensor_bytes = n;
      m->u.offload.tensor = (const int8_t *)r_take(&r, n);
      break;
    case EEP_RESULT:
      m->u.result.label = r_u16(&r);
      m->u.result.confidence_q15 = r_u16(&r);
      m->u.result.exit = r_u8(&r);
      m->u.result.tier = r_u8(&r);
      m->u.result.fallback = r_u8(&r);
      m->u.result.link_bps = r_u32(&r);
      m->u.result.edge_wait_us = r_u32(&r);
      if (m->u.result.tier > 2 || m->u.result.fallback > 1) { /* flags: bit 0 only, the rest reserved */
        return EEP_ERR_PAYLOAD;
      }
      break;
    case EEP_ERROR:
      m->u.error.code = r_u16(&r);
      m->u.error.message = r_str(&r);
      break;
    case EEP_PING:
    case EEP_PONG:
      m->u.ping.timestamp_us = r_u32(&r);
      break;
    case EEP_TELEMETRY:
      m->u.telemetry.count = r_u8(&r);
      m->u.telemetry.entries = r_take(&r, (size_t)m->u.telemetry.count * 5u);
      break;
    default:
      return EEP_ERR_TYPE;
  }
  return (r.err || r.pos != len) ? EEP_ERR_PAYLOAD : EEP_OK;
}

/* ---- frames ------------------------------------------------------------------------ */

/* COBS encoder fed one byte at a time; `remaining` counts the bytes still to come. */
typedef struct {
  uint8_t *out;
  size_t cap, o, code_at;
  uint8_t code;
  int err;
} cobs_writer;

static void cobs_put(cobs_writer *c, uint8_t byte, size_t remaining) {
  if (c->err) {
    return;
  }
  if (byte) {
    if (c->o >= c->cap) {
      c->err = 1;
      return;
    }
    c->out[c->o++] = byte;
    ++c->code;
  }
  if (!byte || c->code == 0xFF) {
    c->out[c->code_at] = c->code;
    c->code = 1;
    c->code_at = c->o;
    if (!byte || remaining) {
      if (c->o >= c->cap) {
        c->err = 1;
        return;
      }
      ++c->o;
    }
  }
}

int32_t eep_encode_frame(uint8_t type, uint16_t request_id, const uint8_t *payload, size_t len, uint8_t *out,
                         size_t cap) {
  uint8_t head[EEP_HEADER_BYTES], tail[EEP_CRC_BYTES];
  cobs_writer c;
  size_t i, total = EEP_HEADER_BYTES + len + EEP_CRC_BYTES, sent = 0;
  uint32_t crc;
  if (len > EEP_MAX_PAYLOAD) {
    return EEP_ERR_LENGTH;
  }
  if (cap < 2) {
    return EEP_ERR_SPACE;
  }
  head[0] = EEP_VERSION;
  head[1] = type;
  put_u16(head + 2, request_id);
  put_u16(head + 4, (uint16_t)len);
  crc = eep_crc32(eep_crc32(0, head, sizeof head), payload, len);
  put_u32(tail, crc);
  c.out = out;
  c.cap = cap - 1; /* room for the delimiter */
  c.o = 1;
  c.code_at = 0;
  c.code = 1;
  c.err = 0;
  for (i = 0; i < sizeof head; ++i) {
    cobs_put(&c, head[i], total - ++sent);
  }
  for (i = 0; i < len; ++i) {
    cobs_put(&c, payload[i], total - ++sent);
  }
  for (i = 0; i < sizeof tail; ++i) {
    cobs_put(&c, tail[i], total - ++sent);
  }
  if (c.err) {
    return EEP_ERR_SPACE;
  }
  out[c.code_at] = c.code;
  out[c.o++] = 0;
  return (int32_t)c.o;
}

/* In-place COBS decode of buf[0..n); returns the decoded length or EEP_ERR_COBS. */
static int32_t cobs_decode_in_place(uint8_t *buf, size_t n) {
  size_t i = 0, o = 0;
  while (i < n) {
    uint8_t code = buf[i++];
    uint8_t j;
    if (code == 0) {
      return EEP_ERR_COBS;
    }
    for (j = 1; j < code; ++j) {
      if (i >= n || buf[i] == 0) {
        return EEP_ERR_COBS;
      }
      buf[o++] = buf[i++];
    }
    if (code != 0xFF && i < n) {
      buf[o++] = 0;
    }
  }
  return (int32_t)o;
}

void eep_reader_init(eep_reader *r, uint8_t *buf, size_t cap) {
  r->buf = buf;
  r->cap = cap;
  r->len = 0;
  r->overflow = 0;
  r->dropped = 0;
  r->last_error = EEP_OK;
}

static int drop(eep_reader *r, eep_status why) {
  r->dropped++;
  r->last_error = why;
  return why;
}

int eep_reader_push(eep_reader *r, uint8_t byte, eep_msg *m) {
  int32_t n;
  uint16_t length;
  eep_status st;
  if (byte != 0) {
    if (r->overflow) {
      return 0;
    }
    if (r->len >= r->cap) {
      r->overflow = 1;
      return 0;
    }
    r->buf[r->len++] = byte;
    return 0;
  }
  if (r->overflow) {
    r->overflow = 0;
    r->len = 0;
    return drop(r, EEP_ERR_OVERFLOW);
  }
  if (r->len == 0) {
    return 0; /* a bare delimiter: resynchronisation */
  }
  n = cobs_decode_in_place(r->buf, r->len);
  r->len = 0;
  if (n < 0) {
    return drop(r, EEP_ERR_COBS);
  }
  if ((size_t)n < EEP_HEADER_BYTES + EEP_CRC_BYTES) {
    return drop(r, EEP_ERR_SHORT);
  }
  if (eep_crc32(0, r->buf, (size_t)n - EEP_CRC_BYTES) != get_u32(r->buf + n - EEP_CRC_BYTES)) {
    return drop(r, EEP_ERR_CRC);
  }
  if (r->buf[0] != EEP_VERSION) {
    return drop(r, EEP_ERR_VERSION);
  }
  length = get_u16(r->buf + 4);
  if ((size_t)length != (size_t)n - EEP_HEADER_BYTES - EEP_CRC_BYTES || length > EEP_MAX_PAYLOAD) {
    return drop(r, EEP_ERR_LENGTH);
  }
  st = eep_unpack_payload(r->buf[1], r->buf + EEP_HEADER_BYTES, length, m);
  if (st != EEP_OK) {
    return drop(r, st);
  }
  m->request_id = get_u16(r->buf + 2);
  return 1;
}
