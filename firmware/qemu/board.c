/* mps2-an386 peripherals: CMSDK APB UART0 (interrupt-driven receive), TIMER0 clock, SysTick wake-up, semihosting. */
#include "mps2.h"

#define REG(addr) (*(volatile uint32_t *)(addr))

#define UART0 0x40004000u
#define UART_DATA REG(UART0 + 0x00u)
#define UART_STATE REG(UART0 + 0x04u)
#define UART_CTRL REG(UART0 + 0x08u)
#define UART_INTCLEAR REG(UART0 + 0x0Cu)
#define UART_BAUDDIV REG(UART0 + 0x10u)
#define UART_STATE_TXFULL 0x1u
#define UART_STATE_RXFULL 0x2u
#define UART_CTRL_TX_EN 0x1u
#define UART_CTRL_RX_EN 0x2u
#define UART_CTRL_RX_IRQ 0x8u
#define UART_INT_RX 0x2u

#define TIMER0 0x40000000u
#define TIMER_CTRL REG(TIMER0 + 0x00u)
#define TIMER_VALUE REG(TIMER0 + 0x04u)
#define TIMER_RELOAD REG(TIMER0 + 0x08u)

#define NVIC_ISER0 REG(0xE000E100u)
#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)

#define SEMIHOST_WRITE0 0x04u
#define SEMIHOST_EXIT_EXTENDED 0x20u
#define ADP_STOPPED_APPLICATION_EXIT 0x20026u

/* Received bytes, filled by the RX interrupt. When it is full the interrupt is masked, the byte
   stays in the UART and QEMU holds the rest back: nothing is lost. */
#define RX_RING 1024u
static volatile uint8_t rx_ring[RX_RING];
static volatile uint32_t rx_head, rx_tail; /* written by the interrupt / by eeq_uart_read */

static uint32_t timer_last;
static uint64_t timer_total;

void eeq_uart_irq(void);
void eeq_tick_irq(void);

void eeq_uart_irq(void) {
  UART_INTCLEAR = UART_INT_RX;
  while (UART_STATE & UART_STATE_RXFULL) {
    if (rx_head - rx_tail == RX_RING) {
      UART_CTRL &= ~UART_CTRL_RX_IRQ; /* eeq_uart_read unmasks it once it has made room */
      return;
    }
    rx_ring[rx_head % RX_RING] = (uint8_t)UART_DATA;
    ++rx_head;
  }
}

void eeq_tick_irq(void) {}

void eeq_board_init(uint32_t wake_period_us) {
  UART_BAUDDIV = 16u; /* the smallest divider CMSDK allows; QEMU does not pace the line */
  UART_CTRL = UART_CTRL_TX_EN | UART_CTRL_RX_EN | UART_CTRL_RX_IRQ;
  NVIC_ISER0 = 1u << 0; /* IRQ 0: UART0 RX */
  TIMER_RELOAD = 0xFFFFFFFFu;
  TIMER_VALUE = 0xFFFFFFFFu;
  TIMER_CTRL = 1u; /* enable, counting down at 25 MHz, no interrupt */
  timer_last = TIMER_VALUE;
  if (wake_period_us > 0) {
    SYST_RVR = wake_period_us * EEQ_TICKS_PER_US - 1u; /* SysTick counts the 25 MHz processor clock */
    SYST_CVR = 0u;
    SYST_CSR = 0x7u; /* processor clock, interrupt, enable */
  }
}

void eeq_uart_write(const uint8_t *data, size_t len) {
  size_t i;
  for (i = 0; i < len; ++i) {
    while (UART_STATE & UART_STATE_TXFULL) {
    }
    UART_DATA = data[i];
  }
}

size_t eeq_uart_read(uint8_t *buf, size_t cap) {
  size_t n = 0;
  while (n < cap && rx_tail != rx_head) {
    buf[n++] = rx_ring[rx_tail % RX_RING];
    ++rx_tail;
  }
  if (n > 0) {
    UART_CTRL |= UART_CTRL_RX_IRQ; /* there is room again (a waiting byte raises the interrupt at once) */
  }
  return n;
}

void eeq_wait_for_input(void) {
  __asm__ volatile("cpsid i" ::: "memory");
  if (rx_head == rx_tail) {
    __asm__ volatile("wfi" ::: "memory"); /* a pending interrupt wakes it even while masked */
  }
  __asm__ volatile("cpsie i" ::: "memory");
}

uint64_t eeq_ticks(void) {
  uint32_t now = TIMER_VALUE;
  timer_total += timer_last - now; /* the timer counts down; unsigned arithmetic handles its wrap */
  timer_last = now;
  return timer_total;
}

uint32_t eeq_micros(void) { return (uint32_t)(eeq_ticks() / EEQ_TICKS_PER_US); }

static uint32_t semihost(uint32_t op, const void *arg) {
  register uint32_t r0 __asm__("r0") = op;
  register const void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

void eeq_console(const char *text) { (void)semihost(SEMIHOST_WRITE0, text); }

void eeq_exit(int code) {
  uint32_t block[2];
  block[0] = ADP_STOPPED_APPLICATION_EXIT;
  block[1] = (uint32_t)code;
  (void)semihost(SEMIHOST_EXIT_EXTENDED, block);
  for (;;) {
  }
}
