/*
 * Latency counter on SysTick (systick.c). TAG_COUNTER_SCALE converts ticks into
 * TAG_COUNTER_UNIT: under QEMU with -icount shift=0 on mps2 one tick is 40 instructions; on
 * Renode, run at one instruction per clock with SysTick on the core clock, one instruction.
 */
#include <stdint.h>

#include "platform.h"

void tag_counter_start(void)
{
    tag_systick_start();
}

uint8_t tag_counter_unit(void)
{
    return (uint8_t)(TAG_COUNTER_UNIT_ID);
}

tag_count_t tag_counter_now(void)
{
    return tag_systick_ticks() * (TAG_COUNTER_SCALE);
}

tag_count_t tag_counter_elapsed(tag_count_t since)
{
    return tag_counter_now() - since;
}

void tag_counter_sync(void)
{
    tag_systick_sync();
}
