/*
 * Bare-metal platform layer of the livestock-tag firmware.
 *
 * One small API for everything the application needs from the board: the UART to the host,
 * a latency counter with an explicit unit, the stack high-water mark, fault reporting and a
 * way to stop the emulator with an exit code. Plain C99. The common part (startup.c, fault.c)
 * serves every Cortex-M; the drivers of a platform (uart_<name>.c, counter_<name>.c) and their
 * parameters are named by the target profile (device_sim/targets/<name>.toml, [platforms]) and
 * compiled in by device_sim/crossbuild.py.
 *
 * Compile-time options (set with -D by device_sim/crossbuild.py from the profile, or by hand):
 *   TAG_EXTERNAL_IRQS  external interrupt lines of the MCU (length of the vector table)
 *   TAG_SEMIHOSTING    1 under an emulator: tag_exit() is a semihosting exit; 0 on a real
 *                      board without a debugger, where that call would fault: it parks the core.
 *   TAG_PLATFORM_HOST  the same API for a host process (platform_host.c): UART = stdin/stdout,
 *                      counter in nanoseconds; the Arm sources are then not compiled.
 */
#ifndef TAG_PLATFORM_H
#define TAG_PLATFORM_H

#include <stdint.h>

/* ---- UART to the host ---- */

/* One driver per platform (uart_<name>.c, named by the target profile's platform: init, write,
 * available, getc; putc and puts are uart.c's, over write); its base address, clock and
 * TAG_UART_BAUD come from the profile as -D definitions. Polled, no interrupts, no buffering:
 * the host side of the wire protocol does flow control. */
void tag_uart_init(void);
void tag_uart_putc(uint8_t byte);                  /* blocks while the TX buffer is full */
void tag_uart_write(const uint8_t *data, uint32_t len);
void tag_uart_puts(const char *text);              /* no newline added */
int tag_uart_available(void);                      /* 1 when a byte is waiting */
int tag_uart_getc(void);                           /* next byte 0..255, or -1 if none: no wait */

/* ---- latency counter ---- */

/*
 * One driver per platform (counter_<name>.c: systick, dwt; platform_host.c on the host). Its
 * unit comes from the target profile's platform: "instructions" under an emulator that counts
 * them (QEMU -icount shift=0, Renode), "cycles" on silicon (DWT->CYCCNT), "nanoseconds" on the
 * host. Every figure carries its unit: never call instructions cycles.
 *   TAG_COUNTER_UNIT     the unit as text (e.g. "instructions")
 *   TAG_COUNTER_UNIT_ID  the same as a HELLO.counter_unit value (messages.toml)
 *   TAG_COUNTER_SCALE    units per hardware tick (40 instructions per SysTick tick on mps2)
 *   TAG_COUNTER_FALLBACK_UNIT_ID, TAG_COUNTER_FALLBACK_SCALE  counter_dwt.c only: what SysTick
 *                        counts where the core has no DWT (an emulator)
 */
typedef uint64_t tag_count_t;

#if !defined(TAG_COUNTER_UNIT) || !defined(TAG_COUNTER_UNIT_ID) || !defined(TAG_COUNTER_SCALE)
#error "TAG_COUNTER_UNIT, _UNIT_ID and _SCALE come from the target profile (device_sim/crossbuild.py)"
#endif

void tag_counter_start(void);                      /* starts the counter; safe to call again */
uint8_t tag_counter_unit(void);                    /* HELLO.counter_unit of what it counts */
tag_count_t tag_counter_now(void);                 /* in TAG_COUNTER_UNIT since start */
tag_count_t tag_counter_elapsed(tag_count_t since); /* now - since, in TAG_COUNTER_UNIT */
void tag_counter_sync(void);                       /* wait for the next counter edge */
/* Interrupts off around a measurement, so that no handler's instructions are counted in it
 * (a SysTick wrap then only sets COUNTFLAG, and the next read counts it). Exact while the
 * measured code takes fewer than 2^24 ticks. Returns the previous state for tag_irq_restore. */
uint32_t tag_irq_mask(void);
void tag_irq_restore(uint32_t state);

/* SysTick as a 56-bit tick count on the processor clock (systick.c, every Cortex-M). */
void tag_systick_start(void);
uint64_t tag_systick_ticks(void);
void tag_systick_sync(void);                       /* wait for the next tick edge */

/* ---- stack (painted at reset, reserved at the top of RAM by the linker script) ---- */

#define TAG_STACK_PAINT 0xC0FFEE55u

uint32_t tag_stack_peak(void);                     /* bytes of stack ever used (high-water mark) */
uint32_t tag_stack_reserved(void);                 /* bytes the linker script reserved */

/* ---- replay region ---- */

/* Where an emulator's loader put a replay image (bulk replay; layout in device_sim/replay.py):
 * stores its address in *base and returns the region's size in bytes, 0 where there is none.
 * On Arm, TAG_REPLAY_ORIGIN and TAG_REPLAY_BYTES come from the target profile's platform
 * (replay_region.c); on silicon nothing is loaded there, and the harness refuses bulk replay
 * on a board. On the host, the file that the environment variable TAG_REPLAY_ENV names,
 * mapped read-only (platform_host.c). */
uint32_t tag_replay_region(const uint8_t **base);

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

#if !defined(TAG_PLATFORM_HOST) && !defined(TAG_SEMIHOSTING)
#error "TAG_SEMIHOSTING comes from the target profile's platform (device_sim/crossbuild.py)"
#endif

/* Ends the run: semihosting SYS_EXIT_EXTENDED (QEMU exits with `code`), else parks the core. */
void tag_exit(int code) __attribute__((noreturn));

/* The application's entry point, called by Reset_Handler after .data/.bss/stack setup. */
int main(void);

#endif /* TAG_PLATFORM_H */
