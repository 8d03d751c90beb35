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
#define SYSTICK_CTRL_COUNTFLAG (1u << 16) /* reached 0 since CTRL was last read; reading clears */
/* The reload value: the longest period, 2^24 ticks, unless a test asks for shorter wraps. */
#ifndef TAG_SYSTICK_RELOAD
#define TAG_SYSTICK_RELOAD 0x00FFFFFFu
#endif
#define SYSTICK_PERIOD ((uint64_t)(TAG_SYSTICK_RELOAD) + 1u)

#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)
#define ICSR_PENDSTCLR (1u << 25)

/*
 * The one software global SysTick needs: how many times it has wrapped since
 * tag_systick_start(). With the 24-bit counter this makes a 56-bit tick count.
 * A measurement with interrupts masked may span one wrap, not two (platform.h).
 */
static volatile uint32_t tag_systick_wraps;

void SysTick_Handler(void)
{
    (void)SYSTICK->CTRL; /* clears COUNTFLAG: this wrap is counted here */
    tag_systick_wraps++;
}

void tag_systick_start(void)
{
    if (SYSTICK->CTRL & SYSTICK_CTRL_ENABLE) {
        return;
    }
    tag_systick_wraps = 0u;
    SYSTICK->LOAD = TAG_SYSTICK_RELOAD;
    SYSTICK->VAL = 0u;
    SYSTICK->CTRL = SYSTICK_CTRL_CLKSOURCE | SYSTICK_CTRL_TICKINT | SYSTICK_CTRL_ENABLE;
}

uint64_t tag_systick_ticks(void)
{
    /* With interrupts masked (as around a measurement), a wrap the handler has not counted yet
     * shows as COUNTFLAG: count it here, take back the pending interrupt, and re-read VAL, which
     * is then after the reload. COUNTFLAG rather than ICSR.PENDSTSET, which Renode 1.15 does
     * not report; it ignores PENDSTCLR too, so there the handler counts the wrap once more
     * afterwards: that moves the time line by one wrap between two measurements, never inside
     * one. */
    uint32_t primask = tag_irq_mask();
    uint32_t val = SYSTICK->VAL;
    if (SYSTICK->CTRL & SYSTICK_CTRL_COUNTFLAG) {
        SCB_ICSR = ICSR_PENDSTCLR;
        tag_systick_wraps++;
        val = SYSTICK->VAL;
    }
    uint32_t wraps = tag_systick_wraps;
    tag_irq_restore(primask);
    /* The wrap is signalled as VAL reaches 0, so 0 is the first tick of the next period. */
    uint64_t in_period = ((uint64_t)(TAG_SYSTICK_RELOAD) - val + 1u) % SYSTICK_PERIOD;
    return (uint64_t)wraps * SYSTICK_PERIOD + in_period;
}

void tag_systick_sync(void)
{
    /* Start a measurement on a tick edge: a count quantised to several instructions per tick
     * then comes out the same every time the same code runs, whatever the phase was before. */
    uint32_t first = SYSTICK->VAL;
    while (SYSTICK->VAL == first) {
    }
}
