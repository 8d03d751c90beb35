/*
 * Bare-metal platform layer of the livestock-tag firmware.
 *
 * One small API for everything the application needs from the board: the UART to the host,
 * a latency counter with an explicit unit, the stack high-water mark, fault reporting and a
 * way to stop the emulator with an exit code. It targets the Arm mps2 boards that QEMU uses as
 * stand-ins for the real tags (CMSDK APB UART0, SysTick) and keeps to plain C99.
 *
 * Compile-time options (set with -D by device_sim/build.py or by hand):
 *   TAG_COUNTER_DWT    use DWT->CYCCNT (real silicon) instead of SysTick; the unit is "cycles".
 *   TAG_SEMIHOSTING=0  real board without a debugger: tag_exit() parks the core instead of
 *                      issuing a semihosting call (which would fault without a debugger).
 *   TAG_PLATFORM_HOST  the same API for a host process (platform_host.c): UART = stdin/stdout,
 *                      counter in nanoseconds; the Arm sources are then not compiled.
 */
#ifndef TAG_PLATFORM_H
#define TAG_PLATFORM_H

#include <stdint.h>

/* ---- UART (CMSDK APB UART0 at 0x40004000 on mps2-an385 / mps2-an386) ---- */

/* Register block of the CMSDK APB UART; offsets from the CMSDK technical reference. */
typedef struct {
    volatile uint32_t DATA;      /* 0x00 read: received byte, write: byte to send */
    volatile uint32_t STATE;     /* 0x04 bit0 TX buffer full, bit1 RX buffer full, bits2-3 overrun */
    volatile uint32_t CTRL;      /* 0x08 bit0 TX enable, bit1 RX enable */
    volatile uint32_t INTSTATUS; /* 0x0C interrupt status / clear */
    volatile uint32_t BAUDDIV;   /* 0x10 baud divider, >= 16 (QEMU refuses to send below 16) */
} tag_uart_regs_t;

#define TAG_UART0_BASE 0x40004000u
#define TAG_UART0 ((tag_uart_regs_t *)TAG_UART0_BASE)

#define TAG_UART_STATE_TX_FULL 0x1u
#define TAG_UART_STATE_RX_FULL 0x2u
#define TAG_UART_CTRL_TX_EN 0x1u
#define TAG_UART_CTRL_RX_EN 0x2u

/* mps2 boards clock the APB peripherals from the 25 MHz system clock. */
#define TAG_UART_PCLK_HZ 25000000u
#define TAG_UART_BAUD 115200u

void tag_uart_init(void);
void tag_uart_putc(uint8_t byte);                  /* blocks while the TX buffer is full */
void tag_uart_write(const uint8_t *data, uint32_t len);
void tag_uart_puts(const char *text);              /* no newline added */
int tag_uart_available(void);                      /* 1 when a byte is waiting */
int tag_uart_getc(void);                           /* next byte 0..255, or -1 if none: no wait */

/* ---- latency counter ---- */

/*
 * Under QEMU with -icount shift=0 one SysTick tick is 40 instructions on mps2 (25 MHz sysclk,
 * 1 ns of virtual time per instruction), so the SysTick counter is reported in instructions.
 * On real silicon DWT->CYCCNT counts core cycles. Every figure carries its unit: never call
 * instructions cycles.
 */
typedef uint64_t tag_count_t;

#if defined(TAG_PLATFORM_HOST)
#define TAG_COUNTER_UNIT "nanoseconds" /* platform_host.c: CLOCK_MONOTONIC */
#define TAG_COUNTER_SCALE 1u
#elif defined(TAG_COUNTER_DWT)
#define TAG_COUNTER_UNIT "cycles"
#define TAG_COUNTER_SCALE 1u
#else
#define TAG_COUNTER_UNIT "instructions"
#define TAG_COUNTER_SCALE 40u /* instructions per SysTick tick under -icount shift=0 on mps2 */
#endif

void tag_counter_start(void);                      /* starts the counter; safe to call again */
tag_count_t tag_counter_now(void);                 /* in TAG_COUNTER_UNIT since start */
tag_count_t tag_counter_elapsed(tag_count_t since); /* now - since, in TAG_COUNTER_UNIT */
void tag_counter_sync(void);                       /* wait for the next counter edge */
/* Interrupts off around a measurement, so that no handler's instructions are counted in it
 * (the SysTick wrap then only pends and is counted on the next read). Exact while the measured
 * code takes fewer than 2^24 ticks. Returns the previous state for tag_irq_restore. */
uint32_t tag_irq_mask(void);
void tag_irq_restore(uint32_t state);

/* ---- stack (painted at reset, reserved at the top of RAM by the linker script) ---- */

#define TAG_STACK_PAINT 0xC0FFEE55u

uint32_t tag_stack_peak(void);                     /* bytes of stack ever used (high-water mark) */
uint32_t tag_stack_reserved(void);                 /* bytes the linker script reserved */

/* ---- faults and exit ---- */

/* Bits of the Configurable Fault Status Register (SCB->CFSR) the report most often shows. */
#define TAG_CFSR_IACCVIOL 0x00000001u   /* MemManage: instruction access violation */
#define TAG_CFSR_DACCVIOL 0x00000002u   /* MemManage: data access violation */
#define TAG_CFSR_PRECISERR 0x00000200u  /* BusFault: precise data bus error */
#define TAG_CFSR_BFARVALID 0x00008000u  /* BusFault: BFAR holds the faulting address */
#define TAG_CFSR_UNDEFINSTR 0x00010000u /* UsageFault: undefined instruction */
#define TAG_CFSR_INVSTATE 0x00020000u   /* UsageFault: invalid EPSR state (e.g. ARM mode) */

/*
 * Provided by the application: called from the HardFault / MemManage / BusFault / UsageFault
 * handler with the stacked PC of the faulting instruction and SCB->CFSR. It runs in handler
 * mode on whatever stack is left, so keep it short (send a frame, no allocation). When it
 * returns, the platform stops with tag_exit(TAG_EXIT_FAULT).
 */
void tag_fault_report(uint32_t pc, uint32_t cfsr);

#define TAG_EXIT_FAULT 3

#ifndef TAG_SEMIHOSTING
#define TAG_SEMIHOSTING 1
#endif

/* Ends the run: semihosting SYS_EXIT_EXTENDED (QEMU exits with `code`), else parks the core. */
void tag_exit(int code) __attribute__((noreturn));

/* The application's entry point, called by Reset_Handler after .data/.bss/stack setup. */
int main(void);

#endif /* TAG_PLATFORM_H */
