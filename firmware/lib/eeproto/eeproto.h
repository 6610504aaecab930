/**
 * @file eeproto.h
 * @brief The framed serial protocol of docs/protocol.md, portable C99, no allocation.
 *
 * Wire: COBS(header | payload | crc32) 0x00. The Python twin is contracts/protocol.py; the
 * golden vectors in tests/data/protocol keep both byte-compatible.
 */
#ifndef EEPROTO_H
#define EEPROTO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EEP_VERSION 2u /* 2: RESULT carries link_bps and edge_wait_us */
#define EEP_HEADER_BYTES 6u
#define EEP_CRC_BYTES 4u
#define EEP_MAX_PAYLOAD 16384u
/** Largest packet (header + payload + CRC) and its largest COBS encoding plus delimiter. */
#define EEP_MAX_PACKET (EEP_HEADER_BYTES + EEP_MAX_PAYLOAD + EEP_CRC_BYTES)
#define EEP_MAX_FRAME (EEP_MAX_PACKET + EEP_MAX_PACKET / 254u + 2u)
/** Wire bytes needed for a payload of n bytes (worst case). */
#define EEP_FRAME_BYTES(n) ((n) + EEP_HEADER_BYTES + EEP_CRC_BYTES + ((n) + EEP_HEADER_BYTES + EEP_CRC_BYTES) / 254u + 2u)
#define EEP_MAX_RANK 8u

/** Status codes: 0 is success, negatives are errors. */
typedef enum {
  EEP_OK = 0,
  EEP_ERR_COBS = -1,     /**< invalid COBS encoding */
  EEP_ERR_SHORT = -2,    /**< packet shorter than header + CRC */
  EEP_ERR_CRC = -3,      /**< CRC mismatch */
  EEP_ERR_VERSION = -4,  /**< other protocol version */
  EEP_ERR_LENGTH = -5,   /**< length field disagrees with the packet */
  EEP_ERR_TYPE = -6,     /**< unknown message type */
  EEP_ERR_PAYLOAD = -7,  /**< payload malformed for its type */
  EEP_ERR_OVERFLOW = -8, /**< frame longer than the receive buffer */
  EEP_ERR_SPACE = -9     /**< output buffer too small */
} eep_status;

typedef enum {
  EEP_HELLO = 0x01,
  EEP_HELLO_ACK = 0x02,
  EEP_INFER = 0x03,
  EEP_OFFLOAD = 0x04,
  EEP_RESULT = 0x05,
  EEP_ERROR = 0x06,
  EEP_PING = 0x07,
  EEP_PONG = 0x08,
  EEP_TELEMETRY = 0x09
} eep_type;

/** A short ASCII string inside a payload (not NUL-terminated). */
typedef struct {
  const char *text;
  uint8_t len;
} eep_str;

/** A decoded message; byte fields point into the frame buffer. */
typedef struct {
  uint8_t type;
  uint16_t request_id;
  union {
    struct { uint16_t fw_version; eep_str board; const uint8_t *model_hash; } hello;
    struct { uint8_t accepted; eep_str reason; } hello_ack;
    struct { uint16_t h, w, c; const uint8_t *pixels; } infer;
    struct {
      uint8_t exit, rank;
      uint16_t dims[EEP_MAX_RANK];
      float scale;
      int8_t zero_point;
      uint32_t time_spent_us, energy_spent_uj, deadline_left_us;
      const int8_t *tensor;
      uint32_t tensor_bytes;
    } offload;
    struct {
      uint16_t label, confidence_q15;
      uint8_t exit, tier, fallback;
      uint32_t link_bps;     /**< the OFFLOAD's throughput as its receiver timed it (0: not measured) */
      uint32_t edge_wait_us; /**< the answering tier's expected wait for the next offload (0: free or unknown) */
    } result;
    struct { uint16_t code; eep_str message; } error;
    struct { uint32_t timestamp_us; } ping; /**< PING and PONG */
    struct { uint8_t count; const uint8_t *entries; } telemetry; /**< count x (slice u8, micros u32) */
  } u;
} eep_msg;

/** CRC-32 (IEEE 802.3, reflected) of data, continuing from crc (start with 0). */
uint32_t eep_crc32(uint32_t crc, const uint8_t *data, size_t n);

/** Serialize msg's payload into out (cap bytes); returns its length or EEP_ERR_SPACE / EEP_ERR_PAYLOAD. */
int32_t eep_pack_payload(const eep_msg *msg, uint8_t *out, size_t cap);

/** Parse a payload of the given type into msg. */
eep_status eep_unpack_payload(uint8_t type, const uint8_t *payload, size_t len, eep_msg *msg);

/**
 * Encode a whole frame (COBS + delimiter) from a payload; returns bytes written or a
 * negative status. out needs EEP_FRAME_BYTES(len) bytes.
 */
int32_t eep_encode_frame(uint8_t type, uint16_t request_id, const uint8_t *payload, size_t len, uint8_t *out,
                         size_t cap);

/** Streaming receiver with a caller-owned buffer; resynchronises on every 0x00. */
typedef struct {
  uint8_t *buf;
  size_t cap;
  size_t len;
  int overflow;
  uint32_t dropped;
  eep_status last_error;
} eep_reader;

void eep_reader_init(eep_reader *r, uint8_t *buf, size_t cap);

/**
 * Push one received byte. Returns 1 when it completed a valid frame (msg filled; its
 * pointers stay valid until the next push), 0 when more bytes are needed, or a negative
 * status when it completed a frame that was dropped.
 */
int eep_reader_push(eep_reader *r, uint8_t byte, eep_msg *msg);

#ifdef __cplusplus
}
#endif

#endif /* EEPROTO_H */
