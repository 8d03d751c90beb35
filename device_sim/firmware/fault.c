/*
 * Fault reporting and the end of a run.
 *
 * Every fault (and every exception the firmware does not expect) enters tag_fault_entry, which
 * finds the exception frame the core pushed, takes the PC of the faulting instruction and the
 * Configurable Fault Status Register, and hands both to the application's tag_fault_report().
 * The run then ends with tag_exit(TAG_EXIT_FAULT).
 */
#include <stdint.h>

#include "platform.h"

#define SCB_CFSR (*(volatile uint32_t *)0xE000ED28u)

/* Semihosting operations (Arm "Semihosting for AArch32 and AArch64", v2.0). */
#define SEMIHOST_SYS_EXIT 0x18u          /* angel_SWIreason_ReportException */
#define SEMIHOST_SYS_EXIT_EXTENDED 0x20u /* same, with a parameter block carrying the code */
#define ADP_STOPPED_APPLICATION_EXIT 0x20026u
#define ADP_STOPPED_RUNTIME_ERROR_UNKNOWN 0x20023u

/* Exception frame order pushed by the core: r0 r1 r2 r3 r12 lr pc xpsr (then FP state). */
#define FRAME_PC 6

void tag_fault_dispatch(const uint32_t *frame);

/*
 * Bit 2 of EXC_RETURN in LR says which stack the core pushed the frame on (MSP or PSP).
 * Naked: no prologue may touch the stack before the frame pointer is taken.
 */
__attribute__((naked)) void tag_fault_entry(void)
{
    __asm volatile(
        "tst lr, #4\n\t"
        "ite eq\n\t"
        "mrseq r0, msp\n\t"
        "mrsne r0, psp\n\t"
        "b tag_fault_dispatch\n\t");
}

void tag_fault_dispatch(const uint32_t *frame)
{
    tag_fault_report(frame[FRAME_PC], SCB_CFSR);
    tag_exit(TAG_EXIT_FAULT);
}

#if TAG_SEMIHOSTING
static uint32_t semihost_call(uint32_t op, const void *arg)
{
    register uint32_t r0 __asm("r0") = op;
    register const void *r1 __asm("r1") = arg;
    __asm volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}
#endif

void tag_exit(int code)
{
#if TAG_SEMIHOSTING
    /* SYS_EXIT_EXTENDED passes the exit code through (QEMU exits with it); the plain SYS_EXIT
     * of AArch32 only says success or failure and is the fallback for hosts without it. */
    const uint32_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)code};
    (void)semihost_call(SEMIHOST_SYS_EXIT_EXTENDED, block);
    (void)semihost_call(SEMIHOST_SYS_EXIT,
                        (const void *)(uintptr_t)(code == 0 ? ADP_STOPPED_APPLICATION_EXIT
                                                            : ADP_STOPPED_RUNTIME_ERROR_UNKNOWN));
#else
    (void)code;
#endif
    /* No semihosting host: park the core. Interrupts are masked so nothing runs again. */
    __asm volatile("cpsid i" ::: "memory");
    for (;;) {
        __asm volatile("wfi");
    }
}
