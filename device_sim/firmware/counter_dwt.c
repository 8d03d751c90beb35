/*
 * Latency counter of a real chip: DWT->CYCCNT, 32 bits of core cycles (TAG_COUNTER_UNIT
 * "cycles", extended to 64 bits by counting wraps on each read). The same firmware runs on
 * emulators whose core has no DWT (Renode's nRF52840: the register reads 0, QEMU's mps2 too):
 * there it counts SysTick ticks instead, in TAG_COUNTER_FALLBACK_UNIT scaled by
 * TAG_COUNTER_FALLBACK_SCALE ("instructions" where the emulator runs one instruction per
 * clock). Which of the two counts is decided once, at start, and announced in HELLO.
 */
#include <stdint.h>

#include "platform.h"

#if !defined(TAG_COUNTER_FALLBACK_UNIT_ID) || !defined(TAG_COUNTER_FALLBACK_SCALE)
#error "TAG_COUNTER_FALLBACK_UNIT_ID and _SCALE come from the target profile's platform"
#endif

#define DEMCR (*(volatile uint32_t *)0xE000EDFCu)
#define DEMCR_TRCENA (1u << 24)
#define DWT_CTRL (*(volatile uint32_t *)0xE0001000u)
#define DWT_CTRL_CYCCNTENA 1u
#define DWT_CYCCNT (*(volatile uint32_t *)0xE0001004u)

/* Set once by tag_counter_start: whether CYCCNT counts, and its 64-bit extension. */
typedef struct {
    uint32_t started;
    uint32_t has_dwt;
    uint32_t last;   /* CYCCNT at the previous read */
    uint64_t high;   /* wraps of CYCCNT seen so far, << 32 */
} dwt_counter_t;

static dwt_counter_t dwt_counter;

void tag_counter_start(void)
{
    if (dwt_counter.started) {
        return;
    }
    DEMCR |= DEMCR_TRCENA;
    DWT_CYCCNT = 0u;
    DWT_CTRL |= DWT_CTRL_CYCCNTENA;
    uint32_t before = DWT_CYCCNT;
    for (volatile uint32_t i = 0; i < 16u; ++i) {
    }
    dwt_counter.has_dwt = DWT_CYCCNT != before;
    dwt_counter.started = 1u;
    if (!dwt_counter.has_dwt) {
        tag_systick_start();
    }
}

uint8_t tag_counter_unit(void)
{
    return (uint8_t)(dwt_counter.has_dwt ? TAG_COUNTER_UNIT_ID : TAG_COUNTER_FALLBACK_UNIT_ID);
}

tag_count_t tag_counter_now(void)
{
    if (!dwt_counter.has_dwt) {
        return tag_systick_ticks() * (TAG_COUNTER_FALLBACK_SCALE);
    }
    /* A read that is lower than the one before has seen a wrap: an elapsed time is right
     * while it is shorter than 2^32 cycles (67 s at 64 MHz), whatever came between. */
    uint32_t primask = tag_irq_mask();
    uint32_t now = DWT_CYCCNT;
    if (now < dwt_counter.last) {
        dwt_counter.high += (uint64_t)1u << 32;
    }
    dwt_counter.last = now;
    uint64_t value = dwt_counter.high + now;
    tag_irq_restore(primask);
    return value;
}

tag_count_t tag_counter_elapsed(tag_count_t since)
{
    return tag_counter_now() - since;
}

void tag_counter_sync(void)
{
    /* CYCCNT counts every cycle: nothing to align to. SysTick does tick edges. */
    if (!dwt_counter.has_dwt) {
        tag_systick_sync();
    }
}
