/**
 * @file mps2.h
 * @brief The bare-metal board layer for QEMU's mps2-an386 (Cortex-M4F): UART0, TIMER0, semihosting.
 *
 * Peripherals (Arm AN386 / QEMU hw/arm/mps2.c): CMSDK APB UART0 at 0x40004000 (its RX interrupt is
 * IRQ 0), CMSDK APB TIMER0 at 0x40000000 clocked at 25 MHz. Run under
 * `qemu-system-arm -M mps2-an386 -icount shift=0`: every instruction then takes 1 ns of virtual
 * time, so one TIMER0 tick is exactly EEQ_INSNS_PER_TICK instructions and the clock is
 * deterministic (docs/qemu.md).
 */
#ifndef EEQ_MPS2_H
#define EEQ_MPS2_H

#include <stddef.h>
#include <stdint.h>

/** TIMER0 ticks per microsecond (the AN386 peripheral clock: 25 MHz). */
#define EEQ_TICKS_PER_US 25u
/** Instructions per TIMER0 tick under -icount shift=0 (1 ns per instruction, 40 ns per tick). */
#define EEQ_INSNS_PER_TICK 40u

/**
 * Start UART0 (TX and RX, received bytes buffered by the RX interrupt) and TIMER0; with
 * `wake_period_us` > 0 also SysTick, which wakes eeq_wait_for_input that often (0: no SysTick, so
 * that nothing but the code measured runs between two clock readings).
 */
void eeq_board_init(uint32_t wake_period_us);

/** Write `len` bytes to UART0, waiting while its one-byte transmit buffer is full. */
void eeq_uart_write(const uint8_t *data, size_t len);

/** Move up to `cap` received bytes into `buf`; returns how many (0 when none arrived). */
size_t eeq_uart_read(uint8_t *buf, size_t cap);

/** Sleep until an interrupt (a received byte or the SysTick wake-up) unless bytes are already waiting. */
void eeq_wait_for_input(void);

/** TIMER0 ticks since eeq_board_init, extended to 64 bits (call at least every 171 s of virtual time). */
uint64_t eeq_ticks(void);

/** Microseconds since eeq_board_init, wrapping at 2^32. */
uint32_t eeq_micros(void);

/** Write a NUL-terminated text on the host's console (semihosting SYS_WRITE0). */
void eeq_console(const char *text);

/** End the emulation with exit status `code` (semihosting SYS_EXIT_EXTENDED). */
void eeq_exit(int code);

/** Lowest address the stack may reach (from the linker script) and its top. */
extern uint32_t __stack_limit[], __stack_top[];

/** Bytes of stack ever used: the reset code paints the stack, this finds the deepest overwritten word. */
size_t eeq_stack_used(void);

#endif /* EEQ_MPS2_H */
