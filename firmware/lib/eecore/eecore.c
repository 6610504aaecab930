/* The device side of the early-exit protocol. See eecore.h and docs/firmware.md. */
#include "eecore.h"

#include <string.h>

/* ERROR codes of docs/protocol.md. */
enum { ERR_VERSION = 1, ERR_UNKNOWN_TYPE = 2, ERR_MALFORMED = 3, ERR_BUSY = 5, ERR_INTERNAL = 6, ERR_HELLO_REQUIRED = 7 };
enum { TIER_DEVICE = 0 };

static uint32_t elapsed_us(const eec_ctx *ctx) { return ctx->io.micros(ctx->io.user) - ctx->started_us; }

/* How long a request may take before the device answers by itself. */
static uint32_t budget_us(const eec_ctx *ctx) {
  return ctx->cfg.deadline_us > ctx->cfg.fallback_margin_us ? ctx->cfg.deadline_us - ctx->cfg.fallback_margin_us : 0;
}

static void send_msg(eec_ctx *ctx, const eep_msg *m) {
  int32_t n = eep_pack_payload(m, ctx->payload, sizeof ctx->payload);
  if (n >= 0) {
    n = eep_encode_frame(m->type, m->request_id, ctx->payload, (size_t)n, ctx->frame, sizeof ctx->frame);
  }
  if (n < 0 || ctx->io.send(ctx->io.user, ctx->frame, (size_t)n) != 0) {
    ctx->stats.send_errors++;
  }
}

static void send_error(eec_ctx *ctx, uint16_t request_id, uint16_t code, const char *text) {
  eep_msg m;
  m.type = EEP_ERROR;
  m.request_id = request_id;
  m.u.error.code = code;
  m.u.error.message.text = text;
  m.u.error.message.len = (uint8_t)strlen(text);
  send_msg(ctx, &m);
}

static void send_hello(eec_ctx *ctx) {
  eep_msg m;
  m.type = EEP_HELLO;
  m.request_id = 0;
  m.u.hello.fw_version = EEC_FW_VERSION;
  m.u.hello.board.text = ctx->cfg.board;
  m.u.hello.board.len = (uint8_t)strlen(ctx->cfg.board);
  m.u.hello.model_hash = ctx->model_hash;
  send_msg(ctx, &m);
}

/* TELEMETRY, then the request's one final RESULT. */
static void finish(eec_ctx *ctx, uint16_t label, uint16_t confidence_q15, uint8_t exit_number, uint8_t tier,
                   uint8_t fallback, uint32_t link_bps, uint32_t edge_wait_us) {
  eep_msg m;
  m.type = EEP_TELEMETRY;
  m.request_id = ctx->request;
  m.u.telemetry.count = ctx->exits;
  m.u.telemetry.entries = ctx->telemetry;
  send_msg(ctx, &m);
  m.type = EEP_RESULT;
  m.u.result.label = label;
  m.u.result.confidence_q15 = confidence_q15;
  m.u.result.exit = exit_number;
  m.u.result.tier = tier;
  m.u.result.fallback = fallback;
  m.u.result.link_bps = link_bps;
  m.u.result.edge_wait_us = edge_wait_us;
  send_msg(ctx, &m);
  ctx->waiting = 0;
  if (fallback) {
    ctx->stats.fallbacks++;
  }
}

/* Answer from the deepest computed exit: its first maximal logit and the policy's confidence. */
static void answer_locally(eec_ctx *ctx, uint8_t fallback) {
  int k = ctx->exits - 1, j, top = 0;
  for (j = 1; j < EE_NUM_CLASSES; ++j) {
    if (ctx->logits[j] > ctx->logits[top]) {
      top = j;
    }
  }
  finish(ctx, (uint16_t)top, ee_policy_confidence_q15(k, ctx->logits, EE_NUM_CLASSES), (uint8_t)ctx->exits, TIER_DEVICE,
         fallback, 0, 0);
}

/* OFFLOAD slice k's trunk and start waiting; ERROR internal if its shape is wrong. */
static eec_status offload(eec_ctx *ctx, int k, const eec_slice_out *out) {
  eep_msg m;
  uint32_t spent = elapsed_us(ctx), n = out->trunk_rank >= 1 && out->trunk_rank <= EEP_MAX_RANK ? 1u : 0u;
  uint8_t i;
  for (i = 0; n != 0 && i < out->trunk_rank; ++i) {
    uint16_t d = out->trunk_dims[i];
    m.u.offload.dims[i] = d;
    n = d != 0 && n <= ee_slices[k].trunk_bytes / d ? n * d : 0; /* 0: empty or too large */
  }
  if (n != ee_slices[k].trunk_bytes) {
    send_error(ctx, ctx->request, ERR_INTERNAL, "trunk shape");
    return EEC_ERR_SLICE;
  }
  m.type = EEP_OFFLOAD;
  m.request_id = ctx->request;
  m.u.offload.exit = (uint8_t)(k + 1);
  m.u.offload.rank = out->trunk_rank;
  m.u.offload.scale = ee_slices[k].trunk_scale;
  m.u.offload.zero_point = (int8_t)ee_slices[k].trunk_zero_point;
  m.u.offload.time_spent_us = spent;
  m.u.offload.energy_spent_uj = (uint32_t)((uint64_t)spent * ctx->cfg.active_power_uw / 1000000u);
  m.u.offload.deadline_left_us = spent < ctx->cfg.deadline_us ? ctx->cfg.deadline_us - spent : 0u;
  m.u.offload.tensor = out->trunk;
  m.u.offload.tensor_bytes = n;
  ctx->waiting = 1;
  ctx->stats.offloads++;
  send_msg(ctx, &m);
  return EEC_OK;
}

/* The policy's decision at device exit k, with the link and the edge as the edge's RESULTs reported them. */
static int decide(const eec_ctx *ctx, int k) {
  ee_policy_state s;
  uint32_t spent = elapsed_us(ctx), budget = budget_us(ctx);
  s.exit_index = k;
  s.logits = ctx->logits;
  s.num_classes = EE_NUM_CLASSES;
  s.time_spent_us = spent;
  s.energy_spent_uj = (uint32_t)((uint64_t)spent * ctx->cfg.active_power_uw / 1000000u);
  s.deadline_left_us = budget > spent ? budget - spent : 0;
  s.bandwidth_bps = ctx->link_bps; /* 0 until the edge measured an OFFLOAD: the policy's nominal figure */
  s.edge_wait_us = ctx->edge_wait_us;
  s.battery_pace_uj = UINT32_MAX;   /* no battery budget */
  s.can_offload = (uint8_t)(ctx->acknowledged && EE_DEVICE_SLICES < EE_NUM_SLICES);
  return ee_policy_decide(&s);
}

/* Run the device slices on the quantized input in ctx->act[0], handing trunks on through act[0] and act[1]. */
static eec_status run_device(eec_ctx *ctx) {
  int8_t *in = ctx->act[0], *trunk = ctx->act[1], *swap;
  eec_slice_out out;
  int k;
  for (k = 0;; ++k) {
    uint32_t t0 = ctx->io.micros(ctx->io.user), us;
    uint8_t *entry = ctx->telemetry + 5 * k;
    out.logits = ctx->logits;
    out.trunk = trunk;
    out.trunk_rank = 0;
    if (ctx->io.run_slice(ctx->io.user, k, in, &out) != 0) {
      send_error(ctx, ctx->request, ERR_INTERNAL, "slice failed");
      return EEC_ERR_SLICE;
    }
    us = ctx->io.micros(ctx->io.user) - t0;
    entry[0] = (uint8_t)(k + 1);
    entry[1] = (uint8_t)us;
    entry[2] = (uint8_t)(us >> 8);
    entry[3] = (uint8_t)(us >> 16);
    entry[4] = (uint8_t)(us >> 24);
    ctx->exits = (uint8_t)(k + 1);
    if (decide(ctx, k) == EE_EXIT) {
      answer_locally(ctx, 0);
      return EEC_OK;
    }
    if (elapsed_us(ctx) >= budget_us(ctx)) {
      answer_locally(ctx, 1);
      return EEC_OK;
    }
    if (k == EE_DEVICE_SLICES - 1) {
      /* The edge starts at slice EE_DEVICE_SLICES + 1: only the last device exit can offload. */
      if (!ctx->acknowledged || EE_DEVICE_SLICES == EE_NUM_SLICES) {
        answer_locally(ctx, 0);
        return EEC_OK;
      }
      return offload(ctx, k, &out);
    }
    swap = in;
    in = trunk;
    trunk = swap;
  }
}

eec_status eec_infer(eec_ctx *ctx, uint16_t request_id, uint16_t h, uint16_t w, uint16_t c, const uint8_t *pixels) {
  size_t i;
  if (ctx->waiting) {
    ctx->stats.busy++;
    send_error(ctx, request_id, ERR_BUSY, "busy");
    return EEC_OK;
  }
  if (h != EE_INPUT_H || w != EE_INPUT_W || c != EE_INPUT_C || !pixels) {
    send_error(ctx, request_id, ERR_MALFORMED, "input shape");
    return EEC_ERR_SHAPE;
  }
  ctx->request = request_id;
  ctx->started_us = ctx->io.micros(ctx->io.user);
  ctx->exits = 0;
  for (i = 0; i < EEC_INPUT_BYTES; ++i) {
    ctx->act[0][i] = ee_input_lut[i % EE_INPUT_C][pixels[i]];
  }
  return run_device(ctx);
}

void eec_poll(eec_ctx *ctx) {
  if (ctx->waiting && elapsed_us(ctx) >= budget_us(ctx)) {
    answer_locally(ctx, 1);
  }
}

/*
 * What a RESULT from the edge says about the link and the edge (late ones too: the measurement holds):
 * the first throughput sets the estimate, later ones move it by 1/2^EEC_LINK_SHIFT of the difference
 * (an integer EWMA, rounding down); 0 means not measured and changes nothing. The wait is the latest.
 */
static void observe_edge(eec_ctx *ctx, uint32_t link_bps, uint32_t edge_wait_us) {
  uint64_t est = ctx->link_bps;
  if (link_bps != 0) {
    est = est == 0 ? link_bps : (est * ((1u << EEC_LINK_SHIFT) - 1u) + link_bps) >> EEC_LINK_SHIFT;
    ctx->link_bps = (uint32_t)est;
  }
  ctx->edge_wait_us = edge_wait_us;
}

static eec_status handle(eec_ctx *ctx, const eep_msg *m) {
  eep_msg reply;
  switch (m->type) {
    case EEP_PING:
      reply.type = EEP_PONG;
      reply.request_id = m->request_id;
      reply.u.ping.timestamp_us = m->u.ping.timestamp_us;
      send_msg(ctx, &reply);
      if (!ctx->acknowledged) {
        send_hello(ctx);
      }
      break;
    case EEP_HELLO_ACK:
      ctx->acknowledged = m->u.hello_ack.accepted ? 1u : 0u;
      break;
    case EEP_INFER:
      return eec_infer(ctx, m->request_id, m->u.infer.h, m->u.infer.w, m->u.infer.c, m->u.infer.pixels);
    case EEP_RESULT:
      observe_edge(ctx, m->u.result.link_bps, m->u.result.edge_wait_us);
      if (ctx->waiting && m->request_id == ctx->request) {
        /* The edge's answer as it is, its fallback flag and reports included (it answered from its own exit). */
        finish(ctx, m->u.result.label, m->u.result.confidence_q15, m->u.result.exit, m->u.result.tier,
               m->u.result.fallback, m->u.result.link_bps, m->u.result.edge_wait_us);
      } else {
        ctx->stats.late++;
      }
      break;
    case EEP_ERROR:
      if (m->u.error.code == ERR_HELLO_REQUIRED) {
        /* A new edge (e.g. a restarted bridge) that does not know our model: an OFFLOAD in flight went
         * to its predecessor and will never be answered, and offloading waits for the new HELLO_ACK. */
        if (ctx->waiting) {
          answer_locally(ctx, 1);
        }
        ctx->acknowledged = 0;
        send_hello(ctx);
      } else if (ctx->waiting && m->request_id == ctx->request) {
        /* The edge cannot serve the request in progress: do not wait for the deadline. */
        answer_locally(ctx, 1);
      } else {
        ctx->stats.ignored++;
      }
      break;
    default:
      ctx->stats.ignored++;
      break;
  }
  return EEC_OK;
}

/*
 * Answer a frame dropped for its version, type or payload with the matching ERROR. eep_reader
 * reports these only after the CRC matched, and decodes in place into ctx->rx, whose header
 * (version u8, type u8, request_id u16) is therefore intact.
 */
static void answer_dropped(eec_ctx *ctx, int why) {
  uint16_t request_id = (uint16_t)(ctx->rx[2] | (ctx->rx[3] << 8));
  switch (why) {
    case EEP_ERR_VERSION:
      send_error(ctx, request_id, ERR_VERSION, "version");
      break;
    case EEP_ERR_TYPE:
      send_error(ctx, request_id, ERR_UNKNOWN_TYPE, "unknown type");
      break;
    case EEP_ERR_LENGTH:
    case EEP_ERR_PAYLOAD:
      send_error(ctx, request_id, ERR_MALFORMED, "malformed");
      break;
    default: /* garbage: COBS, short, CRC, oversize */
      break;
  }
}

eec_status eec_feed(eec_ctx *ctx, const uint8_t *data, size_t len) {
  eec_status first = EEC_OK, st;
  eep_msg m;
  size_t i;
  for (i = 0; i < len; ++i) {
    int r = eep_reader_push(&ctx->reader, data[i], &m);
    if (r == 1) {
      ctx->stats.frames++;
      st = handle(ctx, &m);
      if (first == EEC_OK) {
        first = st;
      }
    } else if (r < 0) {
      ctx->stats.dropped++;
      answer_dropped(ctx, r);
    }
  }
  return first;
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static eec_status parse_hash(uint8_t out[32], const char *hex) {
  int i;
  if (strlen(hex) != 64) {
    return EEC_ERR_HASH;
  }
  for (i = 0; i < 32; ++i) {
    int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return EEC_ERR_HASH;
    }
    out[i] = (uint8_t)(hi * 16 + lo);
  }
  return EEC_OK;
}

eec_status eec_init(eec_ctx *ctx, const eec_io *io, const eec_config *cfg) {
  eec_status st;
  if (!ctx || !io || !cfg || !io->run_slice || !io->micros || !io->send || !cfg->board || strlen(cfg->board) > 255 ||
      cfg->deadline_us == 0) {
    return EEC_ERR_ARG;
  }
  memset(ctx, 0, sizeof *ctx);
  st = parse_hash(ctx->model_hash, EE_MODEL_HASH);
  if (st != EEC_OK) {
    return st;
  }
  ctx->io = *io;
  ctx->cfg = *cfg;
  eep_reader_init(&ctx->reader, ctx->rx, sizeof ctx->rx);
  send_hello(ctx);
  return EEC_OK;
}
