/**
 * @file eecore.h
 * @brief The device side of the early-exit protocol: portable C99, no allocation, no Arduino, no TFLM.
 *
 * The core owns sequencing, policy and protocol (docs/protocol.md, docs/firmware.md). For every
 * INFER it quantizes the pixels through ee_input_lut, runs the device slices in order through a
 * caller-supplied runner, asks ee_policy_decide at every exit, and then answers locally, or
 * offloads the trunk activation to the edge and waits for its RESULT until the request's deadline,
 * after which it answers from its deepest computed exit. Every INFER gets exactly one answer: a
 * final RESULT (preceded by TELEMETRY) or, when it cannot be served, an ERROR.
 *
 * It compiles against the converter's generated ee_model.h and ee_policy.h; every buffer lives in
 * an eec_ctx sized from their constants. An eec_ctx holds several kilobytes: make it static.
 */
#ifndef EECORE_H
#define EECORE_H

#include <stddef.h>
#include <stdint.h>

#include "ee_model.h"
#include "ee_policy.h"
#include "eeproto.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifndef EE_MAX_TRUNK_BYTES
#error "ee_model.h lacks EE_MAX_TRUNK_BYTES: regenerate it with python -m converter build"
#endif
#if EE_DEVICE_SLICES < 1
#error "the generated model places no slice on the device"
#endif

/** Firmware version sent in HELLO. */
#define EEC_FW_VERSION 1u

/** The firmwares' default deadline per request (their EEFW_DEADLINE_US) and fallback margin (EEFW_MARGIN_US);
 * converter/placement.py mirrors both (the build warns when the device slices take longer). */
#define EEC_DEFAULT_DEADLINE_US 500000u
#define EEC_DEFAULT_MARGIN_US 5000u

/** Smoothing of the measured throughput: est += (measured - est) / 2^EEC_LINK_SHIFT (docs/protocol.md). */
#define EEC_LINK_SHIFT 1u

#define EEC_MAX2(a, b) ((a) > (b) ? (a) : (b))
/** Bytes of one int8 input image. */
#define EEC_INPUT_BYTES ((size_t)EE_INPUT_H * EE_INPUT_W * EE_INPUT_C)
/** Bytes of a hand-off buffer: the quantized input or any device slice's trunk activation. */
#define EEC_ACT_BYTES EEC_MAX2(EEC_INPUT_BYTES, (size_t)EE_MAX_TRUNK_BYTES)
/** OFFLOAD payload before its tensor at the largest rank: exit, rank, dims, scale, zero point, 3 x u32. */
#define EEC_OFFLOAD_HEAD_BYTES (2u + 2u * EEP_MAX_RANK + 4u + 1u + 12u)
/** Largest HELLO payload: fw_version, board_len, a 255-byte board name, the model hash. */
#define EEC_HELLO_BYTES (2u + 1u + 255u + 32u)
/** Largest payload the core sends (OFFLOAD, HELLO or TELEMETRY). */
#define EEC_TX_PAYLOAD_BYTES \
  EEC_MAX2(EEC_OFFLOAD_HEAD_BYTES + EEC_ACT_BYTES, EEC_MAX2((size_t)EEC_HELLO_BYTES, 1u + 5u * EE_DEVICE_SLICES))
/** Largest payload the core accepts: an INFER of the model's input, or an ERROR with a 255-byte message. */
#define EEC_RX_PAYLOAD_BYTES EEC_MAX2(6u + EEC_INPUT_BYTES, (size_t)(2u + 1u + 255u))

/** Status codes: 0 is success, negatives are errors. */
typedef enum {
  EEC_OK = 0,
  EEC_ERR_ARG = -1,   /**< NULL pointer, missing callback or out-of-range configuration */
  EEC_ERR_HASH = -2,  /**< EE_MODEL_HASH is not 64 hex digits */
  EEC_ERR_SHAPE = -3, /**< an INFER whose shape is not the model's input (answered with ERROR malformed) */
  EEC_ERR_SLICE = -4  /**< the slice runner failed or reported a wrong trunk shape (answered with ERROR internal) */
} eec_status;

/** What one device slice produces; the core points the buffers, the runner fills them. */
typedef struct {
  int8_t *logits;                    /**< EE_NUM_CLASSES int8 logits of the slice's exit */
  int8_t *trunk;                     /**< ee_slices[k].trunk_bytes int8 values (none for the model's last slice) */
  uint8_t trunk_rank;                /**< set by the runner: rank of the trunk tensor, batch included */
  uint16_t trunk_dims[EEP_MAX_RANK]; /**< set by the runner: its shape, e.g. NHWC (1, H, W, C) */
} eec_slice_out;

/** The hardware seams, supplied by the caller. */
typedef struct {
  void *user; /**< passed back to every callback */
  /**
   * Run device slice `slice` (0-based) on `input` (the quantized image for slice 0, else the previous
   * slice's trunk) and fill `out`. `input` and `out->trunk` never overlap. Returns 0 on success.
   */
  int (*run_slice)(void *user, int slice, const int8_t *input, eec_slice_out *out);
  /** A free-running microsecond clock; wrapping at 2^32 is handled. */
  uint32_t (*micros)(void *user);
  /** Send one whole frame; returns 0 when all bytes were accepted. */
  int (*send)(void *user, const uint8_t *data, size_t len);
} eec_io;

typedef struct {
  const char *board;           /**< board name sent in HELLO, ASCII, at most 255 bytes */
  uint32_t deadline_us;        /**< per request, from the INFER's arrival to its final RESULT; > 0 */
  uint32_t fallback_margin_us; /**< the device stops waiting this long before the deadline */
  uint32_t active_power_uw;    /**< power while computing: energy_spent_uj = time_spent_us x power / 10^6 */
} eec_config;

/** Counters since eec_init. */
typedef struct {
  uint32_t frames;      /**< valid frames received */
  uint32_t dropped;     /**< frames dropped on receipt: garbage, bad CRC, oversize, malformed */
  uint32_t ignored;     /**< valid frames meant for another tier (HELLO, OFFLOAD, PONG, TELEMETRY, stray ERROR) */
  uint32_t late;        /**< RESULTs for no request in progress (already answered or unknown) */
  uint32_t busy;        /**< INFERs refused because another request was in progress */
  uint32_t offloads;    /**< OFFLOADs sent */
  uint32_t fallbacks;   /**< answers flagged fallback: deadline passed, edge ERROR, or the edge's own fallback */
  uint32_t send_errors; /**< frames the send callback refused */
} eec_stats;

/** The whole state of the core. Read `stats`; leave the rest to the eec_ functions. */
typedef struct {
  eec_io io;
  eec_config cfg;
  eec_stats stats;
  eep_reader reader;
  uint8_t model_hash[32];
  uint8_t acknowledged;                    /**< the edge accepted our HELLO: offloading is allowed */
  uint8_t waiting;                         /**< an OFFLOAD for `request` awaits the edge's RESULT */
  uint16_t request;                        /**< id of the request in progress */
  uint32_t started_us;                     /**< when its INFER arrived */
  uint8_t exits;                           /**< exits computed for it so far (telemetry entries) */
  uint32_t link_bps;     /**< smoothed link throughput from the edge's RESULTs (EEC_LINK_SHIFT); 0: none yet */
  uint32_t edge_wait_us; /**< the edge's expected wait from its last RESULT; 0: free or unknown */
  int8_t logits[EE_NUM_CLASSES];           /**< the deepest computed exit's logits */
  uint8_t telemetry[5 * EE_DEVICE_SLICES]; /**< per slice run: slice u8 (from 1), micros u32 */
  uint8_t rx[EEP_FRAME_BYTES(EEC_RX_PAYLOAD_BYTES)];
  int8_t act[2][EEC_ACT_BYTES];          /**< the quantized input, then trunks handed from slice to slice */
  uint8_t payload[EEC_TX_PAYLOAD_BYTES]; /**< outgoing payload */
  uint8_t frame[EEP_FRAME_BYTES(EEC_TX_PAYLOAD_BYTES)];
} eec_ctx;

/**
 * Reset `ctx`, copy `io` and `cfg` (cfg->board must outlive ctx), and send HELLO.
 * @return EEC_OK, EEC_ERR_ARG or EEC_ERR_HASH. A HELLO the link refused is only counted.
 */
eec_status eec_init(eec_ctx *ctx, const eec_io *io, const eec_config *cfg);

/**
 * Push received bytes (one or many) and handle every frame they complete: PING, HELLO_ACK,
 * INFER (which runs the device slices before returning), RESULT and ERROR from the edge. Every RESULT
 * from a tier above (late ones too) updates the link estimate and the edge's wait that the policy sees.
 * @return EEC_OK, or the first EEC_ERR_SHAPE / EEC_ERR_SLICE of a request these bytes carried.
 */
eec_status eec_feed(eec_ctx *ctx, const uint8_t *data, size_t len);

/** Call often: once a waiting request's deadline (less the margin) passes, answers from its deepest exit. */
void eec_poll(eec_ctx *ctx);

/**
 * Serve one request as if an INFER(request_id, h, w, c, pixels) had arrived (the demo uses it).
 * @return EEC_OK (answered, offloaded, or refused with ERROR busy), EEC_ERR_SHAPE or EEC_ERR_SLICE.
 */
eec_status eec_infer(eec_ctx *ctx, uint16_t request_id, uint16_t h, uint16_t w, uint16_t c, const uint8_t *pixels);

#ifdef __cplusplus
}
#endif

#endif /* EECORE_H */
