// Arduino Nano 33 BLE firmware: USB serial and TFLite Micro around the portable core (lib/eecore).
//
//   python -m converter build --board nano33     generated model sources in build/nano33/firmware
//   pio run -e nano33ble -t upload               the protocol firmware (docs/firmware.md)
//   pio run -e nano33ble_demo -t upload          demo mode: compiled-in samples, text on the monitor
//
// All sequencing, policy and protocol logic lives in the core; this file only wires its seams.
#include <Arduino.h>

#include "eecore.h"
#include "tflm_runner.h"

#ifdef EEFW_DEMO
#include "demo.h"
#include "ee_demo_samples.h"
#endif

#ifndef EEFW_DEADLINE_US
#define EEFW_DEADLINE_US EEC_DEFAULT_DEADLINE_US  // per request, INFER to final RESULT
#endif
#ifndef EEFW_MARGIN_US
#define EEFW_MARGIN_US EEC_DEFAULT_MARGIN_US  // stop waiting for the edge this long before the deadline
#endif
#ifndef EEFW_ACTIVE_POWER_UW
#define EEFW_ACTIVE_POWER_UW 9900u  // boards/nano33.toml: compute.active_power_mw = 9.9
#endif

namespace {

constexpr char kBoard[] = "nano33";

eec_ctx g_core;  // plain data, zero-initialized: no global constructor

uint32_t Micros(void*) { return micros(); }

#ifdef EEFW_DEMO
constexpr unsigned long kDemoPeriodMs = 2000;
constexpr unsigned long kMonitorWaitMs = 5000;

void PrintLine(const char* line) { Serial.println(line); }
eefw_print_fn g_print = PrintLine;
uint16_t g_next_sample = 0;
#else
// Old Arduino mbed cores crashed on USB writes over 64 bytes (ArduinoCore-mbed #85): write in
// packets of at most 64 and never call Serial.flush(), which blocked on some cores.
constexpr size_t kUsbPacket = 64;

int SerialSend(void*, const uint8_t* data, size_t len) {
  while (len > 0) {
    const size_t n = len < kUsbPacket ? len : kUsbPacket;
    if (Serial.write(data, n) != n) {
      return -1;  // no host has the port open (the core counts it and carries on)
    }
    data += n;
    len -= n;
  }
  return 0;
}

void FeedFromSerial() {
  uint8_t buf[kUsbPacket];
  size_t n = 0;
  while (n < sizeof buf && Serial.available() > 0) {
    buf[n++] = static_cast<uint8_t>(Serial.read());
  }
  if (n > 0) {
    eec_feed(&g_core, buf, n);
  }
}
#endif

// The generated header is unusable (eec_init refused it): blink instead of running.
[[noreturn]] void Halt() {
  pinMode(LED_BUILTIN, OUTPUT);
  for (;;) {
    digitalWrite(LED_BUILTIN, HIGH);
    delay(100);
    digitalWrite(LED_BUILTIN, LOW);
    delay(100);
  }
}

}  // namespace

// TFLite Micro's log sink (the library's own is compiled out by -DARDUINO_EXCLUDE_CODE): its text
// would corrupt the binary protocol on the shared USB serial, so only demo mode prints it.
extern "C" void DebugLog(const char* s) {
#ifdef EEFW_DEMO
  Serial.print(s);
#else
  (void)s;
#endif
}

void setup() {
  Serial.begin(115200);  // USB CDC: the rate is ignored
  eec_io io;
  io.run_slice = eefw_run_slice;
  io.micros = Micros;
#ifdef EEFW_DEMO
  for (const unsigned long start = millis(); !Serial && millis() - start < kMonitorWaitMs;) {
  }
  io.user = &g_print;
  io.send = eefw_demo_send;
#else
  io.user = nullptr;
  io.send = SerialSend;
#endif
  eec_config cfg;
  cfg.board = kBoard;
  cfg.deadline_us = EEFW_DEADLINE_US;
  cfg.fallback_margin_us = EEFW_MARGIN_US;
  cfg.active_power_uw = EEFW_ACTIVE_POWER_UW;
  if (eec_init(&g_core, &io, &cfg) != EEC_OK) {
    Halt();
  }
}

void loop() {
#ifdef EEFW_DEMO
  // Never acknowledged by an edge, the core answers every sample on the device.
  eec_infer(&g_core, g_next_sample, EE_INPUT_H, EE_INPUT_W, EE_INPUT_C, ee_demo_pixels[g_next_sample]);
  g_next_sample = static_cast<uint16_t>((g_next_sample + 1) % EE_DEMO_SAMPLES);
  delay(kDemoPeriodMs);
#else
  FeedFromSerial();
  eec_poll(&g_core);
#endif
}
