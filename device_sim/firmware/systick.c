/*
 * SysTick as a free-running tick count: 24 bits on the processor clock, extended to 56 by
 * counting its wraps in the interrupt. Every Cortex-M has it, so it is part of the common core;
 * the counter drivers (counter_<name>.c) turn ticks into their unit.
 */
#include <stdint.h>

#include "platform.h"

typedef struct {
    volatile uint32_t CTRL;  /* 0x00 bit0 enable, bit1 interrupt, bit2 processor clock */
    volatile uint32_t LOAD;  /* 0x04 reload value, 24 bits */
    volatile uint32_t VAL;   /* 0x08 current value, counts down; any write clears it */
    volatile uint32_t CALIB; /* 0x0C */
} systick_regs_t;

#define SYSTICK ((systick_regs_t *)0xE000E010u)
#define SYSTICK_CTRL_ENABLE 0x1u
#define SYSTICK_CTRL_TICKINT 0x2u
#define SYSTICK_CTRL_CLKSOURCE 0x4u
#define SYSTICK_MAX 0x00FFFFFFu

#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)
#define ICSR_PENDSTSET (1u << 26)

/*
 * The one software global SysTick needs: how many times it has wrapped since
 * tag_systick_start(). With the 24-bit counter this makes a 56-bit tick count.
 */
static volatile uint32_t tag_systick_wraps;

void SysTick_Handler(void)
{
    tag_systick_wraps++;
}

void tag_systick_start(void)
{
    if (SYSTICK->CTRL & SYSTICK_CTRL_ENABLE) {
        return;
    }
    tag_systick_wraps = 0u;
    SYSTICK->LOAD = SYSTICK_MAX;
    SYSTICK->VAL = 0u;
    SYSTICK->CTRL = SYSTICK_CTRL_CLKSOURCE | SYSTICK_CTRL_TICKINT | SYSTICK_CTRL_ENABLE;
}

uint64_t tag_systick_ticks(void)
{
    /* With interrupts masked, a wrap that has happened but not been counted shows as a pending
     * SysTick exception; count it here and re-read VAL, which is then after the reload. */
    uint32_t primask = tag_irq_mask();
    uint32_t wraps = tag_systick_wraps;
    uint32_t val = SYSTICK->VAL;
    if (SCB_ICSR & ICSR_PENDSTSET) {
        val = SYSTICK->VAL;
        wraps++;
    }
    tag_irq_restore(primask);
    /* The wrap is signalled as VAL reaches 0, so 0 is the first tick of the next period. */
    uint32_t in_period = (SYSTICK_MAX - val + 1u) & SYSTICK_MAX;
    return ((uint64_t)wraps << 24) + in_period;
}

void tag_systick_sync(void)
{
    /* Start a measurement on a tick edge: a count quantised to several instructions per tick
     * then comes out the same every time the same code runs, whatever the phase was before. */
    uint32_t first = SYSTICK->VAL;
    while (SYSTICK->VAL == first) {
    }
}
