/*
 * Latency counter on real silicon: DWT->CYCCNT, 32 bits of core cycles (TAG_COUNTER_UNIT
 * "cycles", TAG_COUNTER_SCALE 1). QEMU's mps2 machines have no DWT (it reads 0): emulated
 * platforms use counter_systick.c.
 */
#include <stdint.h>

#include "platform.h"

#define DEMCR (*(volatile uint32_t *)0xE000EDFCu)
#define DEMCR_TRCENA (1u << 24)
#define DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define DWT_CTRL_CYCCNTENA 1u
#define DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)

void tag_counter_start(void)
{
    if (DWT_CTRL & DWT_CTRL_CYCCNTENA) {
        return;
    }
    DEMCR |= DEMCR_TRCENA;
    DWT_CYCCNT = 0u;
    DWT_CTRL |= DWT_CTRL_CYCCNTENA;
}

tag_count_t tag_counter_now(void)
{
    return DWT_CYCCNT;
}

tag_count_t tag_counter_elapsed(tag_count_t since)
{
    /* 32-bit modular difference: correct across one wrap (67 s at 64 MHz). */
    return (uint32_t)(DWT_CYCCNT - (uint32_t)since);
}

void tag_counter_sync(void)
{
    /* CYCCNT has single-cycle resolution: nothing to align to. */
}

/* The vector table names a SysTick handler in every build; this counter never enables it. */
void SysTick_Handler(void)
{
}
