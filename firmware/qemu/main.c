/* The protocol firmware on QEMU's mps2-an386: the portable core (lib/eecore) with the native
 * inference backend (src/native_runner) behind UART0 and TIMER0. The Arduino build's twin
 * (src/main.cpp); run it with `python -m host demo --target qemu` (docs/qemu.md).
 */
#include <stddef.h>
#include <stdint.h>

#include "eecore.h"
#include "mps2.h"
#include "native_runner.h"

#ifndef EEFW_DEADLINE_US
#define EEFW_DEADLINE_US EEC_DEFAULT_DEADLINE_US /* per request, INFER to final RESULT (as src/main.cpp) */
#endif
#ifndef EEFW_MARGIN_US
#define EEFW_MARGIN_US EEC_DEFAULT_MARGIN_US /* stop waiting for the edge this long before the deadline */
#endif
#ifndef EEFW_ACTIVE_POWER_UW
#define EEFW_ACTIVE_POWER_UW 9900u /* boards/qemu-m4.toml models the nano33's 9.9 mW */
#endif
#ifndef EEFW_WAKE_US
#define EEFW_WAKE_US 1000u /* idle wake-up period: how late eec_poll may notice a passed deadline */
#endif

static eec_ctx core; /* plain data, zeroed by the reset code */

static uint32_t clock_us(void *user) {
  (void)user;
  return eeq_micros();
}

static int uart_send(void *user, const uint8_t *data, size_t len) {
  (void)user;
  eeq_uart_write(data, len);
  return 0;
}

int main(void) {
  eec_io io;
  eec_config cfg;
  eeq_board_init(EEFW_WAKE_US);
  io.user = NULL;
  io.run_slice = eefw_native_run_slice;
  io.micros = clock_us;
  io.send = uart_send;
  cfg.board = "qemu-m4";
  cfg.deadline_us = EEFW_DEADLINE_US;
  cfg.fallback_margin_us = EEFW_MARGIN_US;
  cfg.active_power_uw = EEFW_ACTIVE_POWER_UW;
  if (eec_init(&core, &io, &cfg) != EEC_OK) {
    eeq_console("eefw: eec_init refused the generated ee_model.h (regenerate it with python -m converter build)\n");
    return 1;
  }
  for (;;) {
    uint8_t buf[64];
    size_t n = eeq_uart_read(buf, sizeof buf);
    if (n > 0) {
      (void)eec_feed(&core, buf, n); /* a failed request is answered with ERROR; the core carries on */
    }
    eec_poll(&core);
    if (n == 0) {
      eeq_wait_for_input();
    }
  }
}
