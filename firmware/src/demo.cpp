// Demo mode: the core's frames as text lines. See demo.h.
#include "demo.h"

#include <stdio.h>

#include "ee_demo_samples.h"
#include "ee_model.h"
#include "eecore.h"
#include "eeproto.h"

namespace {

uint8_t g_rx[EEP_FRAME_BYTES(EEC_TX_PAYLOAD_BYTES)];
eep_reader g_reader;
bool g_reader_ready = false;
char g_line[200];
uint32_t g_total_us = 0;  // device time of the request being answered, from its TELEMETRY

uint32_t Micros(const uint8_t* entry) {
  return static_cast<uint32_t>(entry[1]) | (static_cast<uint32_t>(entry[2]) << 8) |
         (static_cast<uint32_t>(entry[3]) << 16) | (static_cast<uint32_t>(entry[4]) << 24);
}

const char* ClassName(unsigned label) { return label < EE_NUM_CLASSES ? ee_demo_classes[label] : "?"; }

const char* TrueClass(unsigned request_id) {
  return request_id < EE_DEMO_SAMPLES ? ClassName(ee_demo_labels[request_id]) : "?";
}

// One line for a frame, or nothing (returns false) for TELEMETRY, which the RESULT line includes.
bool Describe(const eep_msg& m) {
  const unsigned id = m.request_id;
  switch (m.type) {
    case EEP_HELLO:
      snprintf(g_line, sizeof g_line, "early-exit demo: model %s, %d of %d slices on %.*s (firmware %u)", EE_MODEL_NAME,
               EE_DEVICE_SLICES, EE_NUM_SLICES, m.u.hello.board.len, m.u.hello.board.text,
               static_cast<unsigned>(m.u.hello.fw_version));
      return true;
    case EEP_TELEMETRY:
      g_total_us = 0;
      for (unsigned i = 0; i < m.u.telemetry.count; ++i) {
        g_total_us += Micros(m.u.telemetry.entries + 5 * i);
      }
      return false;
    case EEP_RESULT:
      snprintf(g_line, sizeof g_line, "sample %u (%s): %s at exit %u, confidence 0.%03u, %lu us on the device%s", id,
               TrueClass(id), ClassName(m.u.result.label), static_cast<unsigned>(m.u.result.exit),
               m.u.result.confidence_q15 * 1000u / 32768u, static_cast<unsigned long>(g_total_us),
               m.u.result.fallback ? " (fallback)" : "");
      return true;
    case EEP_ERROR:
      snprintf(g_line, sizeof g_line, "sample %u: error %u (%.*s)", id, static_cast<unsigned>(m.u.error.code),
               m.u.error.message.len, m.u.error.message.text);
      return true;
    default:
      snprintf(g_line, sizeof g_line, "sample %u: message type %u", id, static_cast<unsigned>(m.type));
      return true;
  }
}

}  // namespace

int eefw_demo_send(void* user, const uint8_t* data, size_t len) {
  const eefw_print_fn print = *static_cast<const eefw_print_fn*>(user);
  if (!g_reader_ready) {
    eep_reader_init(&g_reader, g_rx, sizeof g_rx);
    g_reader_ready = true;
  }
  eep_msg m;
  int r = 0;
  for (size_t i = 0; i < len; ++i) {
    if (r != 0) {
      return -1;  // bytes after the end of a frame
    }
    r = eep_reader_push(&g_reader, data[i], &m);
  }
  if (r != 1) {
    return -1;
  }
  if (Describe(m)) {
    print(g_line);
  }
  return 0;
}
