/* Host tests of firmware/lib/eecore against the generated fixture (firmware/test/fixture): a fake
 * slice runner returns scripted logits, a fake clock advances by scripted slice costs, and every
 * frame the core sends is decoded back. Built by `make -C firmware test` (prints "N passed, M
 * failed") and, through test/pio/test_core, by PlatformIO's Unity runner (`pio test -e native`). */
#include <stdio.h>
#include <string.h>

#include "eecore.h"

#ifdef PIO_UNIT_TESTING
#include <unity.h>
#define CHECK(cond) TEST_ASSERT_MESSAGE((cond), #cond)
#else
static int case_failed;
#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) {                                                    \
      printf("%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
      case_failed = 1;                                                \
    }                                                                 \
  } while (0)
#endif

/* ERROR codes of docs/protocol.md. */
#define ERR_VERSION 1
#define ERR_UNKNOWN_TYPE 2
#define ERR_MALFORMED 3
#define ERR_BUSY 5
#define ERR_INTERNAL 6
#define ERR_HELLO_REQUIRED 7

#define DEADLINE_US 50000u
#define MARGIN_US 2000u
#define POWER_UW 9900u
#define BOARD "test-board"

/* ---- fakes --------------------------------------------------------------------------------- */

typedef struct {
  int8_t logits[EE_DEVICE_SLICES][EE_NUM_CLASSES]; /* what slice k answers */
  uint32_t cost_us[EE_DEVICE_SLICES];              /* how far slice k advances the clock */
  int fail_at;                                     /* slice that fails, or -1 */
  uint8_t trunk_rank;                              /* rank the runner reports, with trunk_dims */
  uint16_t trunk_dims[EEP_MAX_RANK];               /* 0 in dims[3]: the trunk's size over 1 x 1 x 2 x n */
  int calls;
  int8_t inputs[EE_DEVICE_SLICES][EEC_ACT_BYTES]; /* what slice k received */
  int8_t trunks[EE_DEVICE_SLICES][EEC_ACT_BYTES]; /* what slice k wrote */
} fake_runner;

static fake_runner runner;
static uint32_t clock_us;

static size_t input_bytes(int k) { return k == 0 ? EEC_INPUT_BYTES : ee_slices[k - 1].trunk_bytes; }

static int fake_run_slice(void *user, int k, const int8_t *input, eec_slice_out *out) {
  fake_runner *r = (fake_runner *)user;
  unsigned i;
  r->calls++;
  CHECK(input + input_bytes(k) <= out->trunk || out->trunk + ee_slices[k].trunk_bytes <= input);
  if (k == r->fail_at) {
    return -1;
  }
  memcpy(r->inputs[k], input, input_bytes(k));
  memcpy(out->logits, r->logits[k], EE_NUM_CLASSES);
  for (i = 0; i < ee_slices[k].trunk_bytes; ++i) {
    out->trunk[i] = (int8_t)(uint8_t)(i * 7u + 13u * (unsigned)k + 1u);
  }
  memcpy(r->trunks[k], out->trunk, ee_slices[k].trunk_bytes);
  out->trunk_rank = r->trunk_rank;
  memcpy(out->trunk_dims, r->trunk_dims, sizeof r->trunk_dims);
  if (out->trunk_dims[3] == 0) {
    out->trunk_dims[3] = (uint16_t)(ee_slices[k].trunk_bytes / 2);
  }
  clock_us += r->cost_us[k];
  return 0;
}

static uint32_t fake_micros(void *user) {
  (void)user;
  return clock_us;
}

/* Every frame the core sends, decoded; payload copies keep the message's pointers valid. */
#define MAX_SENT 16
typedef struct {
  eep_msg msg;
  uint8_t payload[EEC_TX_PAYLOAD_BYTES];
} sent_frame;

static sent_frame sent[MAX_SENT];
static int n_sent, bad_sends, refuse_sends;
static eep_reader out_reader;
static uint8_t out_rx[EEP_FRAME_BYTES(EEC_TX_PAYLOAD_BYTES)];

static int fake_send(void *user, const uint8_t *data, size_t len) {
  size_t i;
  int frames = 0;
  (void)user;
  if (refuse_sends) {
    return -1;
  }
  for (i = 0; i < len; ++i) {
    eep_msg m;
    int r = eep_reader_push(&out_reader, data[i], &m);
    if (r == 1 && i == len - 1 && n_sent < MAX_SENT) {
      sent_frame *f = &sent[n_sent++];
      int32_t n = eep_pack_payload(&m, f->payload, sizeof f->payload);
      if (n < 0 || eep_unpack_payload(m.type, f->payload, (size_t)n, &f->msg) != EEP_OK) {
        bad_sends++;
      }
      f->msg.request_id = m.request_id;
      frames++;
    } else if (r != 0) {
      bad_sends++;
    }
  }
  if (frames != 1) {
    bad_sends++; /* a send is exactly one whole frame */
  }
  return 0;
}

static eec_ctx ctx;
static eec_io io;
static eec_config cfg;
static uint8_t pixels[EEC_INPUT_BYTES];

/* Fresh fakes and a freshly initialised core; the HELLO it sends at boot is left in sent[0]. */
static void begin(void) {
  size_t i;
  memset(&runner, 0, sizeof runner);
  runner.fail_at = -1;
  runner.trunk_rank = 4;
  runner.trunk_dims[0] = runner.trunk_dims[1] = 1;
  runner.trunk_dims[2] = 2;
  for (i = 0; i < EE_DEVICE_SLICES; ++i) {
    runner.cost_us[i] = 1000u * (uint32_t)(i + 1);
  }
  for (i = 0; i < EEC_INPUT_BYTES; ++i) {
    pixels[i] = (uint8_t)(i * 37u + 11u);
  }
  clock_us = 1000000u;
  n_sent = bad_sends = refuse_sends = 0;
  eep_reader_init(&out_reader, out_rx, sizeof out_rx);
  io.user = &runner;
  io.run_slice = fake_run_slice;
  io.micros = fake_micros;
  io.send = fake_send;
  cfg.board = BOARD;
  cfg.deadline_us = DEADLINE_US;
  cfg.fallback_margin_us = MARGIN_US;
  cfg.active_power_uw = POWER_UW;
  CHECK(eec_init(&ctx, &io, &cfg) == EEC_OK);
}

/* ---- the edge's side ------------------------------------------------------------------------ */

static uint8_t wire[EEP_FRAME_BYTES(EEC_RX_PAYLOAD_BYTES) + 1];

/* Encode m into wire (with a leading 0x00 when flush is set); returns its length. */
static size_t encode(const eep_msg *m, int flush) {
  static uint8_t payload[EEC_RX_PAYLOAD_BYTES];
  int32_t n = eep_pack_payload(m, payload, sizeof payload);
  CHECK(n >= 0);
  wire[0] = 0;
  n = eep_encode_frame(m->type, m->request_id, payload, (size_t)n, wire + flush, sizeof wire - 1);
  CHECK(n > 0);
  return (size_t)n + (size_t)flush;
}

static eec_status deliver(const eep_msg *m) { return eec_feed(&ctx, wire, encode(m, 0)); }

static eep_msg ping(uint16_t id, uint32_t ts) {
  eep_msg m;
  m.type = EEP_PING;
  m.request_id = id;
  m.u.ping.timestamp_us = ts;
  return m;
}

static eep_msg hello_ack(uint8_t accepted, const char *reason) {
  eep_msg m;
  m.type = EEP_HELLO_ACK;
  m.request_id = 0;
  m.u.hello_ack.accepted = accepted;
  m.u.hello_ack.reason.text = reason;
  m.u.hello_ack.reason.len = (uint8_t)strlen(reason);
  return m;
}

static eep_msg infer(uint16_t id) {
  eep_msg m;
  m.type = EEP_INFER;
  m.request_id = id;
  m.u.infer.h = EE_INPUT_H;
  m.u.infer.w = EE_INPUT_W;
  m.u.infer.c = EE_INPUT_C;
  m.u.infer.pixels = pixels;
  return m;
}

static eep_msg result(uint16_t id, uint16_t label, uint16_t conf, uint8_t exit, uint8_t tier) {
  eep_msg m;
  m.type = EEP_RESULT;
  m.request_id = id;
  m.u.result.label = label;
  m.u.result.confidence_q15 = conf;
  m.u.result.exit = exit;
  m.u.result.tier = tier;
  m.u.result.fallback = 0;
  m.u.result.link_bps = 0;
  m.u.result.edge_wait_us = 0;
  return m;
}

static void acknowledge(void) {
  eep_msg m = hello_ack(1, "");
  CHECK(deliver(&m) == EEC_OK);
}

/* Scripted logits: one class far ahead (the policy exits) or all equal (it does not). */
static const int8_t CONFIDENT[4] = {-128, -128, 127, -128};
static const int8_t UNSURE[4] = {0, 0, 0, 0};
/* A tie between classes 1 and 2 that the policy does not trust: the answer is the first maximum. */
static const int8_t TIED[4] = {5, 9, 9, 0};
/* A lead that only the second exit's logit scale makes confident. */
static const int8_t SECOND_ONLY[4] = {0, 0, 100, 0};

static void script(int k, const int8_t logits[4]) { memcpy(runner.logits[k], logits, EE_NUM_CLASSES); }

/* The fixture's threshold policy at exit k (it reads only the exit and its logits). */
static int decide(int k, const int8_t logits[4]) {
  ee_policy_state s = {0, NULL, 4, 0, 0, 0, 0, 1, 0, UINT32_MAX};
  s.exit_index = k;
  s.logits = logits;
  return ee_policy_decide(&s);
}

/* The fixture's policy must behave as these tests assume (firmware/tools/make_fixture.py). */
static int fixture_ok(void) {
  int k, ok = EE_NUM_CLASSES == 4 && EE_DEVICE_SLICES == 2 && EE_NUM_SLICES == 3;
  for (k = 0; ok && k < EE_DEVICE_SLICES; ++k) {
    ok = decide(k, CONFIDENT) == EE_EXIT && decide(k, UNSURE) != EE_EXIT && decide(k, TIED) != EE_EXIT;
  }
  return ok && decide(0, SECOND_ONLY) != EE_EXIT && decide(1, SECOND_ONLY) == EE_EXIT;
}

static uint32_t telemetry_us(const sent_frame *f, int i) {
  const uint8_t *e = f->msg.u.telemetry.entries + 5 * i;
  return (uint32_t)e[1] | ((uint32_t)e[2] << 8) | ((uint32_t)e[3] << 16) | ((uint32_t)e[4] << 24);
}

/* sent[at] is a TELEMETRY for `id` over `count` slices with the fake's costs, and sent[at + 1] its RESULT. */
static int answered(int at, uint16_t id, int count, uint16_t label, uint16_t conf, uint8_t exit, uint8_t tier,
                    uint8_t fallback) {
  const eep_msg *t = &sent[at].msg, *r = &sent[at + 1].msg;
  int i, ok = n_sent >= at + 2 && t->type == EEP_TELEMETRY && t->request_id == id && t->u.telemetry.count == count;
  for (i = 0; ok && i < count; ++i) {
    ok = t->u.telemetry.entries[5 * i] == i + 1 && telemetry_us(&sent[at], i) == runner.cost_us[i];
  }
  return ok && r->type == EEP_RESULT && r->request_id == id && r->u.result.label == label &&
         r->u.result.confidence_q15 == conf && r->u.result.exit == exit && r->u.result.tier == tier &&
         r->u.result.fallback == fallback;
}

static int is_error(int at, uint16_t id, uint16_t code) {
  return n_sent > at && sent[at].msg.type == EEP_ERROR && sent[at].msg.request_id == id &&
         sent[at].msg.u.error.code == code;
}

/* ---- cases ---------------------------------------------------------------------------------- */

static void test_fixture_matches_the_assumptions(void) { CHECK(fixture_ok()); }

static void test_hello_at_boot_carries_version_board_and_model_hash(void) {
  char hex[65];
  int i;
  begin();
  CHECK(n_sent == 1 && bad_sends == 0);
  CHECK(sent[0].msg.type == EEP_HELLO && sent[0].msg.request_id == 0);
  CHECK(sent[0].msg.u.hello.fw_version == EEC_FW_VERSION);
  CHECK(sent[0].msg.u.hello.board.len == strlen(BOARD) &&
        !memcmp(sent[0].msg.u.hello.board.text, BOARD, sizeof BOARD - 1));
  for (i = 0; i < 32; ++i) {
    sprintf(hex + 2 * i, "%02x", sent[0].msg.u.hello.model_hash[i]);
  }
  CHECK(strcmp(hex, EE_MODEL_HASH) == 0);
}

static void test_ping_before_ack_gets_pong_then_hello_and_after_ack_only_pong(void) {
  eep_msg m = ping(7, 123456u);
  begin();
  CHECK(deliver(&m) == EEC_OK);
  CHECK(n_sent == 3 && sent[1].msg.type == EEP_PONG && sent[1].msg.request_id == 7);
  CHECK(sent[1].msg.u.ping.timestamp_us == 123456u && sent[2].msg.type == EEP_HELLO);
  acknowledge();
  m = ping(8, 99u);
  CHECK(deliver(&m) == EEC_OK);
  CHECK(n_sent == 4 && sent[3].msg.type == EEP_PONG && sent[3].msg.request_id == 8);
  CHECK(sent[3].msg.u.ping.timestamp_us == 99u && bad_sends == 0);
}

static void test_exit_at_first_exit(void) {
  eep_msg m = infer(5);
  size_t i;
  int same = 1;
  begin();
  acknowledge();
  script(0, CONFIDENT);
  CHECK(deliver(&m) == EEC_OK);
  CHECK(runner.calls == 1 && n_sent == 3 && bad_sends == 0);
  CHECK(answered(1, 5, 1, 2, ee_policy_confidence_q15(0, CONFIDENT, 4), 1, 0, 0));
  for (i = 0; i < EEC_INPUT_BYTES; ++i) {
    same &= runner.inputs[0][i] == ee_input_lut[i % EE_INPUT_C][pixels[i]];
  }
  CHECK(same);
  CHECK(ctx.stats.frames == 2 && ctx.stats.offloads == 0 && ctx.stats.fallbacks == 0);
}

static void test_stay_then_exit_hands_the_trunk_on(void) {
  eep_msg m = infer(6);
  begin();
  acknowledge();
  script(0, SECOND_ONLY);
  script(1, SECOND_ONLY);
  CHECK(deliver(&m) == EEC_OK);
  CHECK(runner.calls == 2 && n_sent == 3 && bad_sends == 0);
  CHECK(memcmp(runner.inputs[1], runner.trunks[0], ee_slices[0].trunk_bytes) == 0);
  CHECK(answered(1, 6, 2, 2, ee_policy_confidence_q15(1, SECOND_ONLY, 4), 2, 0, 0));
}

/* Both device exits unsure: OFFLOAD from exit 2 with everything the edge needs. */
static void offload_request(uint16_t id) {
  eep_msg m = infer(id);
  const eep_msg *o = &sent[1].msg;
  uint32_t spent;
  begin();
  spent = runner.cost_us[0] + runner.cost_us[1];
  acknowledge();
  script(0, UNSURE);
  script(1, TIED);
  CHECK(deliver(&m) == EEC_OK);
  CHECK(runner.calls == 2 && n_sent == 2 && bad_sends == 0 && ctx.stats.offloads == 1);
  CHECK(o->type == EEP_OFFLOAD && o->request_id == id && o->u.offload.exit == 2 && o->u.offload.rank == 4);
  CHECK(o->u.offload.dims[0] == 1 && o->u.offload.dims[1] == 1 && o->u.offload.dims[2] == 2);
  CHECK(o->u.offload.dims[3] == ee_slices[1].trunk_bytes / 2);
  CHECK(o->u.offload.scale == ee_slices[1].trunk_scale && o->u.offload.zero_point == ee_slices[1].trunk_zero_point);
  CHECK(o->u.offload.time_spent_us == spent && o->u.offload.deadline_left_us == DEADLINE_US - spent);
  CHECK(o->u.offload.energy_spent_uj == (uint32_t)((uint64_t)spent * POWER_UW / 1000000u));
  CHECK(o->u.offload.tensor_bytes == ee_slices[1].trunk_bytes);
  CHECK(memcmp(o->u.offload.tensor, runner.trunks[1], ee_slices[1].trunk_bytes) == 0);
}

static void test_offload_answered_in_time_echoes_the_edge(void) {
  eep_msg m = result(9, 3, 30000, 3, 1);
  offload_request(9);
  clock_us += 10000u;
  eec_poll(&ctx);
  CHECK(n_sent == 2);
  CHECK(deliver(&m) == EEC_OK);
  CHECK(n_sent == 4 && answered(2, 9, 2, 3, 30000, 3, 1, 0));
  clock_us += DEADLINE_US;
  eec_poll(&ctx);
  CHECK(n_sent == 4 && ctx.stats.fallbacks == 0 && bad_sends == 0);
}

static void test_offload_timeout_falls_back_to_the_deepest_exit_and_ignores_the_late_answer(void) {
  eep_msg m = result(10, 3, 30000, 3, 1);
  uint32_t spent;
  offload_request(10);
  spent = runner.cost_us[0] + runner.cost_us[1];
  clock_us += DEADLINE_US - MARGIN_US - spent - 1u;
  eec_poll(&ctx);
  CHECK(n_sent == 2);
  clock_us += 1u;
  eec_poll(&ctx);
  CHECK(n_sent == 4 && answered(2, 10, 2, 1, ee_policy_confidence_q15(1, TIED, 4), 2, 0, 1));
  CHECK(ctx.stats.fallbacks == 1);
  CHECK(deliver(&m) == EEC_OK);
  eec_poll(&ctx);
  CHECK(n_sent == 4 && ctx.stats.late == 1 && bad_sends == 0);
}

static void test_infer_while_busy_is_refused_and_the_request_in_progress_still_answered_once(void) {
  eep_msg busy = infer(12), m = result(11, 0, 20000, 3, 1), again = result(11, 0, 20000, 3, 1);
  offload_request(11);
  CHECK(deliver(&busy) == EEC_OK);
  CHECK(n_sent == 3 && is_error(2, 12, ERR_BUSY) && ctx.stats.busy == 1 && runner.calls == 2);
  CHECK(deliver(&m) == EEC_OK);
  CHECK(n_sent == 5 && answered(3, 11, 2, 0, 20000, 3, 1, 0));
  CHECK(deliver(&again) == EEC_OK);
  clock_us += DEADLINE_US;
  eec_poll(&ctx);
  CHECK(n_sent == 5 && ctx.stats.late == 1 && bad_sends == 0);
}

static void test_an_edge_error_for_the_request_falls_back_at_once(void) {
  eep_msg m;
  offload_request(13);
  m.type = EEP_ERROR;
  m.request_id = 13;
  m.u.error.code = ERR_INTERNAL;
  m.u.error.message.text = "no edge model";
  m.u.error.message.len = 13;
  CHECK(deliver(&m) == EEC_OK);
  CHECK(n_sent == 4 && answered(2, 13, 2, 1, ee_policy_confidence_q15(1, TIED, 4), 2, 0, 1));
  CHECK(ctx.stats.fallbacks == 1 && bad_sends == 0);
}

static void test_an_edge_fallback_answer_keeps_its_flag(void) {
  eep_msg m = result(14, 2, 9000, 3, 1);
  offload_request(14);
  m.u.result.fallback = 1; /* the edge answered from its own exit: the cloud was late */
  CHECK(deliver(&m) == EEC_OK);
  CHECK(n_sent == 4 && answered(2, 14, 2, 2, 9000, 3, 1, 1));
  CHECK(ctx.stats.fallbacks == 1 && bad_sends == 0);
}

static void test_edge_results_smooth_the_link_estimate_and_report_the_wait(void) {
  eep_msg m = result(17, 3, 30000, 3, 1), late = result(16, 3, 30000, 3, 1);
  offload_request(17);
  CHECK(ctx.link_bps == 0 && ctx.edge_wait_us == 0);
  m.u.result.link_bps = 1000000u;
  m.u.result.edge_wait_us = 4000u;
  CHECK(deliver(&m) == EEC_OK);
  CHECK(n_sent == 4 && sent[3].msg.u.result.link_bps == 1000000u && sent[3].msg.u.result.edge_wait_us == 4000u);
  CHECK(ctx.link_bps == 1000000u && ctx.edge_wait_us == 4000u); /* the first measurement sets it */
  late.u.result.link_bps = 200001u;                             /* a late RESULT still measured the link */
  CHECK(deliver(&late) == EEC_OK);
  CHECK(ctx.stats.late == 1 && ctx.link_bps == 600000u && ctx.edge_wait_us == 0); /* (1e6 + 200001) >> 1 */
  late.u.result.link_bps = 0;                                                     /* not measured: kept */
  late.u.result.edge_wait_us = 7u;
  CHECK(deliver(&late) == EEC_OK);
  CHECK(ctx.link_bps == 600000u && ctx.edge_wait_us == 7u);
  late.u.result.link_bps = UINT32_MAX; /* no overflow in the sum */
  CHECK(deliver(&late) == EEC_OK);
  CHECK(ctx.link_bps == (uint32_t)((600000ull + UINT32_MAX) >> 1) && bad_sends == 0);
}

static eep_msg hello_required(uint16_t id) {
  eep_msg m;
  m.type = EEP_ERROR;
  m.request_id = id;
  m.u.error.code = ERR_HELLO_REQUIRED;
  m.u.error.message.text = "send HELLO";
  m.u.error.message.len = 10;
  return m;
}

static void test_hello_required_while_idle_sends_hello_and_stops_offloading_until_acked(void) {
  eep_msg m = hello_required(0), req = infer(16);
  begin();
  acknowledge();
  CHECK(deliver(&m) == EEC_OK);
  CHECK(n_sent == 2 && sent[1].msg.type == EEP_HELLO && !ctx.acknowledged);
  script(0, UNSURE);
  script(1, TIED);
  CHECK(deliver(&req) == EEC_OK); /* not acknowledged again yet: answered on the device */
  CHECK(n_sent == 4 && answered(2, 16, 2, 1, ee_policy_confidence_q15(1, TIED, 4), 2, 0, 0));
  acknowledge();
  req = infer(17);
  CHECK(deliver(&req) == EEC_OK);
  CHECK(n_sent == 5 && sent[4].msg.type == EEP_OFFLOAD && sent[4].msg.request_id == 17 && bad_sends == 0);
}

static void test_hello_required_during_an_offload_falls_back_at_once_then_sends_hello(void) {
  eep_msg m = hello_required(0), late = result(15, 3, 30000, 3, 1);
  offload_request(15);
  CHECK(deliver(&m) == EEC_OK); /* a restarted bridge: the OFFLOAD went to its predecessor */
  CHECK(n_sent == 5 && answered(2, 15, 2, 1, ee_policy_confidence_q15(1, TIED, 4), 2, 0, 1));
  CHECK(sent[4].msg.type == EEP_HELLO && !ctx.acknowledged && !ctx.waiting && ctx.stats.fallbacks == 1);
  CHECK(deliver(&late) == EEC_OK);
  CHECK(n_sent == 5 && ctx.stats.late == 1 && bad_sends == 0);
}

static void test_garbage_bad_crc_and_oversize_frames_are_dropped_and_counted(void) {
  static uint8_t junk[sizeof ctx.rx + 10];
  static const uint8_t noise[] = {0x11, 0x22, 0x33, 0x00, 0x00, 0x05, 0x06};
  eep_msg m = ping(21, 42u);
  size_t n, i;
  begin();
  acknowledge();
  CHECK(eec_feed(&ctx, noise, sizeof noise) == EEC_OK); /* a short frame, then junk before the next one */
  n = encode(&m, 1);                                    /* the leading 0x00 ends the junk */
  for (i = 0; i < n; ++i) {
    CHECK(eec_feed(&ctx, wire + i, 1) == EEC_OK);
  }
  CHECK(n_sent == 2 && sent[1].msg.type == EEP_PONG && sent[1].msg.request_id == 21);
  n = encode(&m, 0);
  wire[n / 2] = (uint8_t)(wire[n / 2] == 0xFF ? 0xFE : wire[n / 2] + 1); /* one corrupt byte, still no 0x00 */
  CHECK(eec_feed(&ctx, wire, n) == EEC_OK);
  memset(junk, 0x55, sizeof junk - 1); /* longer than the receive buffer, then its delimiter */
  junk[sizeof junk - 1] = 0;
  CHECK(eec_feed(&ctx, junk, sizeof junk) == EEC_OK);
  CHECK(ctx.stats.dropped == 4 && ctx.reader.dropped == 4 && n_sent == 2);
  CHECK(deliver(&m) == EEC_OK);
  CHECK(n_sent == 3 && sent[2].msg.type == EEP_PONG && ctx.stats.frames == 3 && bad_sends == 0);
}

static void test_refused_or_missing_ack_never_offloads(void) {
  eep_msg refuse = hello_ack(0, "model hash mismatch"), m = infer(30), p = ping(31, 5u);
  begin();
  script(0, UNSURE);
  script(1, TIED);
  CHECK(deliver(&m) == EEC_OK); /* never acknowledged */
  CHECK(n_sent == 3 && answered(1, 30, 2, 1, ee_policy_confidence_q15(1, TIED, 4), 2, 0, 0));
  acknowledge();
  CHECK(deliver(&refuse) == EEC_OK); /* acknowledged, then refused */
  m = infer(32);
  CHECK(deliver(&m) == EEC_OK);
  CHECK(n_sent == 5 && answered(3, 32, 2, 1, ee_policy_confidence_q15(1, TIED, 4), 2, 0, 0));
  CHECK(deliver(&p) == EEC_OK);
  CHECK(n_sent == 7 && sent[5].msg.type == EEP_PONG && sent[6].msg.type == EEP_HELLO);
  CHECK(ctx.stats.offloads == 0 && bad_sends == 0);
}

static void test_deadline_passed_before_offloading_answers_from_the_exit_reached(void) {
  eep_msg m = infer(40);
  begin();
  acknowledge();
  runner.cost_us[0] = DEADLINE_US;
  script(0, UNSURE);
  CHECK(deliver(&m) == EEC_OK);
  CHECK(runner.calls == 1 && n_sent == 3 && ctx.stats.offloads == 0);
  CHECK(answered(1, 40, 1, 0, ee_policy_confidence_q15(0, UNSURE, 4), 1, 0, 1));
}

static void test_a_failing_slice_answers_error_internal_and_frees_the_device(void) {
  eep_msg m = infer(50);
  begin();
  acknowledge();
  script(0, UNSURE);
  runner.fail_at = 1;
  CHECK(deliver(&m) == EEC_ERR_SLICE);
  CHECK(n_sent == 2 && is_error(1, 50, ERR_INTERNAL));
  runner.fail_at = -1;
  script(0, CONFIDENT);
  m = infer(51);
  CHECK(deliver(&m) == EEC_OK);
  CHECK(n_sent == 4 && answered(2, 51, 1, 2, ee_policy_confidence_q15(0, CONFIDENT, 4), 1, 0, 0));
}

static void test_a_wrong_trunk_shape_is_not_offloaded(void) {
  eep_msg m = infer(52);
  begin();
  acknowledge();
  script(0, UNSURE);
  script(1, UNSURE);
  runner.trunk_rank = 3; /* 1 x 1 x 2: not the trunk's size */
  CHECK(deliver(&m) == EEC_ERR_SLICE);
  CHECK(n_sent == 2 && is_error(1, 52, ERR_INTERNAL) && ctx.stats.offloads == 0 && !ctx.waiting);
}

static void test_trunk_dims_whose_product_wraps_to_the_right_size_are_refused(void) {
  eep_msg m = infer(53);
  begin();
  acknowledge();
  script(0, UNSURE);
  script(1, UNSURE);
  /* 65455 x 60119 x 65533 x 38205 = 1 (mod 2^32): a 32-bit product would match the trunk's size */
  runner.trunk_rank = 5;
  runner.trunk_dims[0] = (uint16_t)ee_slices[1].trunk_bytes;
  runner.trunk_dims[1] = 65455u;
  runner.trunk_dims[2] = 60119u;
  runner.trunk_dims[3] = 65533u;
  runner.trunk_dims[4] = 38205u;
  CHECK(deliver(&m) == EEC_ERR_SLICE);
  CHECK(n_sent == 2 && is_error(1, 53, ERR_INTERNAL) && ctx.stats.offloads == 0);
}

static void test_bad_frames_with_intact_headers_get_errors(void) {
  static uint8_t payload[8];
  eep_msg m = infer(60);
  uint8_t frame[64];
  int32_t n;
  begin();
  m.u.infer.h = EE_INPUT_H - 1; /* a well-formed INFER of another shape */
  CHECK(deliver(&m) == EEC_ERR_SHAPE);
  CHECK(n_sent == 2 && is_error(1, 60, ERR_MALFORMED) && runner.calls == 0);
  n = eep_encode_frame(0x42, 61, payload, 0, frame, sizeof frame); /* unknown type */
  CHECK(n > 0 && eec_feed(&ctx, frame, (size_t)n) == EEC_OK);
  CHECK(n_sent == 3 && is_error(2, 61, ERR_UNKNOWN_TYPE));
  n = eep_encode_frame(EEP_RESULT, 62, payload, 3, frame, sizeof frame); /* RESULT needs 15 bytes */
  CHECK(n > 0 && eec_feed(&ctx, frame, (size_t)n) == EEC_OK);
  CHECK(n_sent == 4 && is_error(3, 62, ERR_MALFORMED));
  CHECK(ctx.stats.dropped == 2 && ctx.stats.frames == 1 && bad_sends == 0);
}

static void test_another_protocol_version_gets_error_version(void) {
  /* version 1 (an old peer), PING, id 70, length 4, payload, CRC: by hand since eeproto writes version 2 */
  uint8_t packet[14] = {1, EEP_PING, 70, 0, 4, 0, 1, 2, 3, 4};
  uint8_t frame[20];
  uint32_t crc = eep_crc32(0, packet, 10);
  size_t i, o = 1, code_at = 0;
  uint8_t code = 1;
  begin();
  packet[10] = (uint8_t)crc;
  packet[11] = (uint8_t)(crc >> 8);
  packet[12] = (uint8_t)(crc >> 16);
  packet[13] = (uint8_t)(crc >> 24);
  for (i = 0; i < sizeof packet; ++i) { /* COBS */
    if (packet[i]) {
      frame[o++] = packet[i];
      code++;
    } else {
      frame[code_at] = code;
      code_at = o++;
      code = 1;
    }
  }
  frame[code_at] = code;
  frame[o++] = 0;
  CHECK(eec_feed(&ctx, frame, o) == EEC_OK);
  CHECK(n_sent == 2 && is_error(1, 70, ERR_VERSION) && ctx.stats.dropped == 1 && bad_sends == 0);
}

static void test_messages_for_other_tiers_are_ignored(void) {
  eep_msg m = ping(80, 1u), stray = result(81, 0, 0, 1, 1);
  begin();
  m.type = EEP_PONG;
  CHECK(deliver(&m) == EEC_OK);
  CHECK(deliver(&stray) == EEC_OK);
  CHECK(n_sent == 1 && ctx.stats.ignored == 1 && ctx.stats.late == 1 && ctx.stats.frames == 2);
}

static void test_the_deadline_survives_the_clock_wrapping(void) {
  eep_msg m = infer(90);
  begin();
  acknowledge();
  clock_us = 0xFFFFFFFFu - 2000u;
  script(0, UNSURE);
  script(1, TIED);
  CHECK(deliver(&m) == EEC_OK);
  CHECK(n_sent == 2 && sent[1].msg.type == EEP_OFFLOAD && sent[1].msg.u.offload.time_spent_us == 3000u);
  clock_us += DEADLINE_US - MARGIN_US - 3001u;
  eec_poll(&ctx);
  CHECK(n_sent == 2);
  clock_us += 1u;
  eec_poll(&ctx);
  CHECK(n_sent == 4 && sent[3].msg.type == EEP_RESULT && sent[3].msg.u.result.fallback == 1);
}

static void test_send_failures_are_counted_and_the_link_recovers(void) {
  eep_msg m = infer(100), r = result(100, 2, 1000, 3, 1);
  begin();
  acknowledge();
  script(0, UNSURE);
  script(1, TIED);
  refuse_sends = 1;
  CHECK(deliver(&m) == EEC_OK);
  CHECK(ctx.stats.send_errors == 1 && ctx.waiting);
  refuse_sends = 0;
  CHECK(deliver(&r) == EEC_OK); /* the edge answered after all */
  CHECK(n_sent == 3 && answered(1, 100, 2, 2, 1000, 3, 1, 0) && bad_sends == 0);
}

static void test_init_rejects_bad_arguments(void) {
  static char long_name[300];
  eec_io no_clock;
  eec_config c;
  begin();
  no_clock = io;
  no_clock.micros = NULL;
  CHECK(eec_init(&ctx, &no_clock, &cfg) == EEC_ERR_ARG);
  c = cfg;
  memset(long_name, 'x', sizeof long_name - 1);
  c.board = long_name;
  CHECK(eec_init(&ctx, &io, &c) == EEC_ERR_ARG);
  c = cfg;
  c.deadline_us = 0;
  CHECK(eec_init(&ctx, &io, &c) == EEC_ERR_ARG);
  CHECK(eec_init(&ctx, NULL, &cfg) == EEC_ERR_ARG && n_sent == 1);
}

#define CASES(X)                                                                      \
  X(test_fixture_matches_the_assumptions)                                             \
  X(test_hello_at_boot_carries_version_board_and_model_hash)                          \
  X(test_ping_before_ack_gets_pong_then_hello_and_after_ack_only_pong)                \
  X(test_exit_at_first_exit)                                                          \
  X(test_stay_then_exit_hands_the_trunk_on)                                           \
  X(test_offload_answered_in_time_echoes_the_edge)                                    \
  X(test_offload_timeout_falls_back_to_the_deepest_exit_and_ignores_the_late_answer)  \
  X(test_infer_while_busy_is_refused_and_the_request_in_progress_still_answered_once) \
  X(test_an_edge_error_for_the_request_falls_back_at_once)                            \
  X(test_an_edge_fallback_answer_keeps_its_flag)                                      \
  X(test_edge_results_smooth_the_link_estimate_and_report_the_wait)                   \
  X(test_hello_required_while_idle_sends_hello_and_stops_offloading_until_acked)      \
  X(test_hello_required_during_an_offload_falls_back_at_once_then_sends_hello)        \
  X(test_garbage_bad_crc_and_oversize_frames_are_dropped_and_counted)                 \
  X(test_refused_or_missing_ack_never_offloads)                                       \
  X(test_deadline_passed_before_offloading_answers_from_the_exit_reached)             \
  X(test_a_failing_slice_answers_error_internal_and_frees_the_device)                 \
  X(test_a_wrong_trunk_shape_is_not_offloaded)                                        \
  X(test_trunk_dims_whose_product_wraps_to_the_right_size_are_refused)                \
  X(test_bad_frames_with_intact_headers_get_errors)                                   \
  X(test_another_protocol_version_gets_error_version)                                 \
  X(test_messages_for_other_tiers_are_ignored)                                        \
  X(test_the_deadline_survives_the_clock_wrapping)                                    \
  X(test_send_failures_are_counted_and_the_link_recovers)                             \
  X(test_init_rejects_bad_arguments)

#ifdef PIO_UNIT_TESTING
void setUp(void) {}
void tearDown(void) {}

int main(void) {
  UNITY_BEGIN();
#define RUN(name) RUN_TEST(name);
  CASES(RUN)
  return UNITY_END();
}
#else
int main(void) {
  static const struct {
    const char *name;
    void (*run)(void);
  } cases[] = {
#define ROW(name) {#name, name},
      CASES(ROW)};
  unsigned i, passed = 0, failed = 0;
  for (i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    case_failed = 0;
    cases[i].run();
    if (case_failed) {
      printf("FAIL %s\n", cases[i].name);
      ++failed;
    } else {
      ++passed;
    }
  }
  printf("%u passed, %u failed\n", passed, failed);
  return failed ? 1 : 0;
}
#endif
