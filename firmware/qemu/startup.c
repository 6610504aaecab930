/* Reset and exception handling for mps2-an386: vector table, memory init, FPU enable, faults. */
#include <stdint.h>
#include <string.h>

#include "mps2.h"

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define SCB_CFSR (*(volatile uint32_t *)0xE000ED28u)
#define STACK_PAINT 0x5AA5A55Au

extern uint32_t __data_start[], __data_end[], __data_load[], __bss_start[], __bss_end[];

int main(void);
void eeq_reset(void);
void eeq_uart_irq(void);
void eeq_tick_irq(void);

static void fault(const char *what) {
  static const char hex[] = "0123456789abcdef";
  char text[] = "eeq: ........ fault, CFSR 0x00000000\n";
  uint32_t cfsr = SCB_CFSR;
  size_t i, n = strlen(what) < 8 ? strlen(what) : 8;
  memset(text + 5, ' ', 8);
  memcpy(text + 5, what, n);
  for (i = 0; i < 8; ++i) {
    text[34 - i] = hex[(cfsr >> (4 * i)) & 0xFu];
  }
  eeq_console(text);
  eeq_exit(3);
}

static void nmi(void) { fault("nmi"); }
static void hard_fault(void) { fault("hard"); }
static void mem_fault(void) { fault("memory"); }
static void bus_fault(void) { fault("bus"); }
static void usage_fault(void) { fault("usage"); }
static void unexpected(void) { fault("irq"); }

typedef void (*handler)(void);

/* After the initial stack pointer (placed by the linker script): 15 system exceptions, then IRQ 0 (UART0 RX). */
__attribute__((section(".vectors"), used)) static const handler vectors[16] = {
    eeq_reset,  nmi,        hard_fault, mem_fault,  bus_fault,  usage_fault, unexpected,   unexpected,
    unexpected, unexpected, unexpected, unexpected, unexpected, unexpected,  eeq_tick_irq, eeq_uart_irq,
};

/* Paint the stack below the current frame so that eeq_stack_used can find its high-water mark. */
__attribute__((noinline)) static void paint_stack(void) {
  volatile uint32_t *p = __stack_limit;
  uint32_t *here = (uint32_t *)__builtin_frame_address(0) - 64;
  while (p < here) {
    *p++ = STACK_PAINT;
  }
}

size_t eeq_stack_used(void) {
  const uint32_t *p = __stack_limit;
  while (p < __stack_top && *p == STACK_PAINT) {
    ++p;
  }
  return (size_t)((const uint8_t *)__stack_top - (const uint8_t *)p);
}

void eeq_reset(void) {
  uint32_t *src = __data_load, *dst = __data_start;
  while (dst < __data_end) {
    *dst++ = *src++;
  }
  for (dst = __bss_start; dst < __bss_end; ++dst) {
    *dst = 0;
  }
  SCB_CPACR |= 0xFu << 20; /* CP10 and CP11 full access: the FPU, before any float instruction */
  __asm__ volatile("dsb\n\tisb" ::: "memory");
  paint_stack();
  eeq_exit(main());
}
