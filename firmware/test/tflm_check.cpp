// The firmware's TFLite Micro glue (src/tflm_runner.cpp, src/demo.cpp) on the host, built against
// real TFLite Micro sources by `make -C firmware tflm-check TFLM=DIR`:
//  1. every demo sample through every device slice gives exactly the int8 logits and trunk that
//     the Python TFLM interpreter gave (test/fixture/tflm_expected.txt, tools/make_fixture.py);
//  2. demo mode through the core answers every sample as the policy decides on those logits.
// Prints the demo's lines, then "N passed, M failed". Usage: tflm_check EXPECTED_FILE
#include <stdio.h>
#include <string.h>

#include <chrono>

#include "demo.h"
#include "ee_demo_samples.h"
#include "eecore.h"
#include "tflm_runner.h"

namespace {

struct Expected {
  int8_t logits[EE_DEVICE_SLICES][EE_NUM_CLASSES];
  int8_t trunk[EE_DEVICE_SLICES][EEC_ACT_BYTES];
};

Expected g_expected[EE_DEMO_SAMPLES];
unsigned g_passed = 0, g_failed = 0;

void Check(bool ok, const char* what, unsigned sample, int slice) {
  if (ok) {
    ++g_passed;
  } else {
    ++g_failed;
    printf("FAIL %s: sample %u, slice %d\n", what, sample, slice + 1);
  }
}

// Lines of "sample slice n_logits logits... n_trunk trunk...".
bool Load(const char* path) {
  FILE* f = fopen(path, "r");
  if (f == nullptr) {
    return false;
  }
  unsigned lines = 0;
  int sample, slice, n, v;
  while (fscanf(f, "%d %d %d", &sample, &slice, &n) == 3) {
    if (sample < 0 || sample >= EE_DEMO_SAMPLES || slice < 0 || slice >= EE_DEVICE_SLICES || n != EE_NUM_CLASSES) {
      break;
    }
    for (int i = 0; i < n && fscanf(f, "%d", &v) == 1; ++i) {
      g_expected[sample].logits[slice][i] = static_cast<int8_t>(v);
    }
    if (fscanf(f, "%d", &n) != 1 || n != static_cast<int>(ee_slices[slice].trunk_bytes)) {
      break;
    }
    for (int i = 0; i < n && fscanf(f, "%d", &v) == 1; ++i) {
      g_expected[sample].trunk[slice][i] = static_cast<int8_t>(v);
    }
    ++lines;
  }
  fclose(f);
  return lines == EE_DEMO_SAMPLES * EE_DEVICE_SLICES;
}

void Quantize(const uint8_t* pixels, int8_t* out) {
  for (size_t i = 0; i < EEC_INPUT_BYTES; ++i) {
    out[i] = ee_input_lut[i % EE_INPUT_C][pixels[i]];
  }
}

// Each slice on its expected input, compared with the Python interpreter's outputs.
void CheckSlices() {
  static int8_t input[EEC_ACT_BYTES];
  static int8_t logits[EE_NUM_CLASSES];
  static int8_t trunk[EEC_ACT_BYTES];
  for (unsigned s = 0; s < EE_DEMO_SAMPLES; ++s) {
    for (int k = 0; k < EE_DEVICE_SLICES; ++k) {
      if (k == 0) {
        Quantize(ee_demo_pixels[s], input);
      } else {
        memcpy(input, g_expected[s].trunk[k - 1], ee_slices[k - 1].trunk_bytes);
      }
      eec_slice_out out;
      out.logits = logits;
      out.trunk = trunk;
      out.trunk_rank = 0;
      const bool ran = eefw_run_slice(nullptr, k, input, &out) == 0;
      Check(ran, "eefw_run_slice", s, k);
      if (!ran) {
        continue;
      }
      const bool same = memcmp(logits, g_expected[s].logits[k], EE_NUM_CLASSES) == 0;
      Check(same, "logits", s, k);
      for (int j = 0; !same && j < EE_NUM_CLASSES; ++j) {
        printf("  class %d: %d here, %d in Python TFLM\n", j, logits[j], g_expected[s].logits[k][j]);
      }
      const unsigned n = ee_slices[k].trunk_bytes;
      unsigned product = out.trunk_rank > 0 ? 1 : 0;
      for (unsigned d = 0; d < out.trunk_rank; ++d) {
        product *= out.trunk_dims[d];
      }
      Check(n == 0 || (product == n && memcmp(trunk, g_expected[s].trunk[k], n) == 0), "trunk", s, k);
    }
  }
}

// What the core must answer for sample s when no edge acknowledged it: the policy's first EXIT,
// else the last device exit; the first maximal logit there. The fixture's threshold policy reads
// only the exit and its logits, so the state's time and energy fields stay 0.
void ExpectedAnswer(unsigned s, unsigned* label, unsigned* exit) {
  ee_policy_state state = {0, nullptr, EE_NUM_CLASSES, 0, 0, 0, 0, 0, 0, UINT32_MAX};  // demo mode: no edge to offload to
  int k = 0;
  for (; k < EE_DEVICE_SLICES - 1; ++k) {
    state.exit_index = k;
    state.logits = g_expected[s].logits[k];
    if (ee_policy_decide(&state) == EE_EXIT) {
      break;
    }
  }
  const int8_t* z = g_expected[s].logits[k];
  unsigned top = 0;
  for (unsigned j = 1; j < EE_NUM_CLASSES; ++j) {
    if (z[j] > z[top]) {
      top = j;
    }
  }
  *label = top;
  *exit = static_cast<unsigned>(k + 1);
}

void Print(const char* line) { printf("%s\n", line); }
eefw_print_fn g_print = Print;

uint8_t g_rx[EEP_FRAME_BYTES(EEC_TX_PAYLOAD_BYTES)];
eep_reader g_reader;
unsigned g_answers = 0;

// Checks each RESULT against the expected answer, then lets the demo print the frame.
int CheckAndPrint(void* user, const uint8_t* data, size_t len) {
  eep_msg m;
  for (size_t i = 0; i < len; ++i) {
    if (eep_reader_push(&g_reader, data[i], &m) == 1 && m.type == EEP_RESULT) {
      unsigned label, exit;
      ExpectedAnswer(m.request_id, &label, &exit);
      Check(m.u.result.label == label && m.u.result.exit == exit && m.u.result.tier == 0 && !m.u.result.fallback,
            "demo answer", m.request_id, static_cast<int>(exit) - 1);
      ++g_answers;
    }
  }
  return eefw_demo_send(user, data, len);
}

uint32_t HostMicros(void*) {
  using namespace std::chrono;
  return static_cast<uint32_t>(duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count());
}

void CheckDemo() {
  static eec_ctx core;
  eep_reader_init(&g_reader, g_rx, sizeof g_rx);
  eec_io io;
  io.user = &g_print;
  io.run_slice = eefw_run_slice;
  io.micros = HostMicros;
  io.send = CheckAndPrint;
  eec_config cfg;
  cfg.board = "host";
  cfg.deadline_us = 60000000u;
  cfg.fallback_margin_us = 0;
  cfg.active_power_uw = 0;
  Check(eec_init(&core, &io, &cfg) == EEC_OK, "eec_init", 0, 0);
  for (uint16_t s = 0; s < EE_DEMO_SAMPLES; ++s) {
    Check(eec_infer(&core, s, EE_INPUT_H, EE_INPUT_W, EE_INPUT_C, ee_demo_pixels[s]) == EEC_OK, "eec_infer", s, 0);
  }
  Check(g_answers == EE_DEMO_SAMPLES && core.stats.send_errors == 0, "one answer per sample", 0, 0);
}

}  // namespace

// TFLite Micro's log sink (the Arduino one is compiled out by -DARDUINO_EXCLUDE_CODE).
extern "C" void DebugLog(const char* s) { fputs(s, stdout); }

int main(int argc, char** argv) {
  if (argc != 2 || !Load(argv[1])) {
    fprintf(stderr, "usage: %s test/fixture/tflm_expected.txt (missing or not matching the fixture)\n", argv[0]);
    return 2;
  }
  CheckSlices();
  CheckDemo();
  printf("%u passed, %u failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
