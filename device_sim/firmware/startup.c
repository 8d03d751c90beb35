/*
 * Reset and exception entry for the Cortex-M3 (collar) and Cortex-M4F (ear tag) builds.
 *
 * The linker script written by device_sim/crossbuild.py provides the symbols used here: the .data
 * image in flash, the .bss bounds and the stack reserved at the top of RAM.
 */
#include <stdint.h>

#include "platform.h"

extern uint32_t __data_load;   /* flash address of the .data image */
extern uint32_t __data_start;
extern uint32_t __data_end;
extern uint32_t __bss_start;
extern uint32_t __bss_end;
extern uint32_t __stack_bottom;
extern uint32_t __stack_top;   /* initial main stack pointer: the top of RAM */

void Reset_Handler(void);
void SysTick_Handler(void);    /* counter_<name>.c */
void tag_fault_entry(void);    /* fault.c: HardFault, MemManage, BusFault, UsageFault */

/* System Handler Control and State Register: enables the configurable fault handlers. */
#define SCB_SHCSR (*(volatile uint32_t *)0xE000ED24u)
#define SHCSR_MEMFAULTENA (1u << 16)
#define SHCSR_BUSFAULTENA (1u << 17)
#define SHCSR_USGFAULTENA (1u << 18)

/* Vector Table Offset Register: where exceptions find their handlers. */
#define SCB_VTOR (*(volatile uint32_t *)0xE000ED08u)

/* Coprocessor Access Control Register: CP10/CP11 full access turns the FPU on. */
#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define CPACR_CP10_CP11_FULL (0xFu << 20)

/*
 * Vector table. An interrupt the firmware does not expect (NMI, SVC, external IRQs) goes to the
 * fault path as well, so the host gets a report instead of a silent hang. TAG_EXTERNAL_IRQS,
 * the MCU's number of external interrupt lines, comes from the target profile's platform; the
 * firmware enables none of them.
 */
#ifndef TAG_EXTERNAL_IRQS
#error "TAG_EXTERNAL_IRQS comes from the target profile's platform (device_sim/crossbuild.py)"
#endif

typedef void (*tag_vector_t)(void);

__attribute__((section(".isr_vector"), used))
const tag_vector_t tag_vectors[16 + TAG_EXTERNAL_IRQS] = {
    (tag_vector_t)(uintptr_t)&__stack_top, /* initial main stack pointer */
    Reset_Handler,
    tag_fault_entry, /* NMI */
    tag_fault_entry, /* HardFault */
    tag_fault_entry, /* MemManage */
    tag_fault_entry, /* BusFault */
    tag_fault_entry, /* UsageFault */
    0, 0, 0, 0,      /* reserved */
    tag_fault_entry, /* SVCall */
    tag_fault_entry, /* DebugMonitor */
    0,               /* reserved */
    tag_fault_entry, /* PendSV */
    SysTick_Handler,
    /* External interrupts: a GNU range designator, as every Cortex-M start-up file in GCC has
     * some way of repeating one handler; this one keeps the count a single number. */
    [16 ... 16 + TAG_EXTERNAL_IRQS - 1] = tag_fault_entry,
};

static void enable_fpu(void)
{
#if defined(__ARM_FP) && !defined(__SOFTFP__)
    /* A hard-float build traps (NOCP UsageFault) on its first FP instruction until CP10/CP11
     * are enabled, so this runs before any C code that could use the FPU. */
    SCB_CPACR |= CPACR_CP10_CP11_FULL;
    __asm volatile("dsb\n\tisb" ::: "memory");
#endif
}

/*
 * Fill the unused part of the stack with TAG_STACK_PAINT so tag_stack_peak() can find the
 * deepest word ever written. Only the words below the current stack pointer are painted: the
 * frame of Reset_Handler itself is live. The pointer is volatile so that the compiler does not
 * turn the loop into a call to memset, whose own frame would sit in the area being painted.
 */
static void paint_stack(void)
{
    uint32_t *sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    for (volatile uint32_t *p = &__stack_bottom; p < sp; ++p) {
        *p = TAG_STACK_PAINT;
    }
}

void Reset_Handler(void)
{
    /* A boot ROM (the CC2538's) or a bootloader may have pointed VTOR elsewhere; the linker
     * script puts this table at the start of flash, aligned as VTOR requires. */
    SCB_VTOR = (uint32_t)(uintptr_t)tag_vectors;
    enable_fpu();

    const uint32_t *src = &__data_load;
    for (volatile uint32_t *dst = &__data_start; dst < &__data_end; ++dst) {
        *dst = *src++;
    }
    for (volatile uint32_t *dst = &__bss_start; dst < &__bss_end; ++dst) {
        *dst = 0u;
    }
    paint_stack();

    /* Without this, MemManage/BusFault/UsageFault escalate to HardFault; the report is the
     * same, but the CFSR then has to be read through the escalation. */
    SCB_SHCSR |= SHCSR_MEMFAULTENA | SHCSR_BUSFAULTENA | SHCSR_USGFAULTENA;

    tag_exit(main());
}

uint32_t tag_stack_reserved(void)
{
    return (uint32_t)((uintptr_t)&__stack_top - (uintptr_t)&__stack_bottom);
}

uint32_t tag_stack_peak(void)
{
    /* The stack grows down from __stack_top: the first word from the bottom that is no longer
     * painted marks the deepest point reached. A frame that reserved space but never wrote
     * it is not seen, so budgets keep a margin (DESIGN.md). */
    const volatile uint32_t *p = &__stack_bottom;
    while (p < &__stack_top && *p == TAG_STACK_PAINT) {
        ++p;
    }
    return (uint32_t)((uintptr_t)&__stack_top - (uintptr_t)p);
}

/* ---- interrupts off and on (PRIMASK), for the counter's measurements ---- */

uint32_t tag_irq_mask(void)
{
    uint32_t primask;
    __asm volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask)::"memory");
    return primask;
}

void tag_irq_restore(uint32_t primask)
{
    __asm volatile("msr primask, %0" ::"r"(primask) : "memory");
}
