/*
 * Compute alone, for benchmarks/throughput.py: TAG_INFER_LOOPS inferences of the model on one
 * fixed window, a single byte on the UART between them. Says "READY" about every 0.25 s (an
 * emulator that boots before the host connects, as Renode does, loses nothing) until a byte
 * comes from the host, then says "START", runs the loop (a "." after each inference), prints
 * "DONE <counter units> <loops>" and exits. The host times START to DONE: guest instructions
 * per wall second of inference alone, without start-up.
 */
#include <stdint.h>

#include "platform.h"
#include "tag_model.h"

#ifndef TAG_INFER_LOOPS
#define TAG_INFER_LOOPS 200
#endif

static tag_model_t model;
static int16_t window[TAG_MODEL_WINDOW * TAG_MODEL_AXES];

void tag_fault_report(uint32_t pc, uint32_t cfsr)
{
    (void)pc, (void)cfsr;
    tag_uart_puts("FAULT\r\n");
}

static void put_u64(uint64_t value)
{
    char digits[24];
    int k = 0;
    do {
        digits[k++] = (char)('0' + value % 10u);
        value /= 10u;
    } while (value != 0u);
    while (k > 0) {
        tag_uart_putc((uint8_t)digits[--k]);
    }
}

int main(void)
{
    uint32_t seed = 12345u;
    tag_uart_init();
    tag_counter_start();
    tag_model_init(&model);
    /* About 1 g on z and a little motion, in Q(TAG_MODEL_INPUT_FRAC): a plausible window. */
    for (uint32_t i = 0u; i < TAG_MODEL_WINDOW * TAG_MODEL_AXES; i++) {
        seed = seed * 1664525u + 1013904223u;
        int32_t noise = (int32_t)(seed >> 22) - 512;
        int32_t gravity = (i % TAG_MODEL_AXES == 2u) ? (1 << TAG_MODEL_INPUT_FRAC) : 0;
        window[i] = (int16_t)(gravity + noise * 4);
    }
    /* Warm-up: an emulator translates the code on its first run, which is start-up too. */
    for (uint32_t n = 0u; n < 2u; n++) {
        (void)tag_model_run(&model, window);
    }
    tag_count_t said = tag_counter_now();
    tag_uart_puts("READY\r\n");
    while (tag_uart_getc() < 0) {
        if (tag_counter_elapsed(said) >= (tag_count_t)(TAG_CLOCK_HZ / 4u)) {
            tag_uart_puts("READY\r\n");
            said = tag_counter_now();
        }
    }
    /* The host times START to DONE: two lines out, equally late, so neither the delay of its
     * go byte into the guest nor of a line out counts. */
    tag_uart_puts("START\r\n");
    /* Each inference timed as the application times it (app_main.c): interrupts off around
     * it alone, as the counter is exact only over fewer than 2^24 SysTick ticks with them off. */
    tag_count_t spent = 0u;
    for (uint32_t n = 0u; n < TAG_INFER_LOOPS; n++) {
        uint32_t irq = tag_irq_mask();
        tag_count_t start = tag_counter_now();
        (void)tag_model_run(&model, window);
        spent += tag_counter_elapsed(start);
        tag_irq_restore(irq);
        /* A byte per inference, as the application sends a RESULT per window: Renode runs a
         * guest that writes nothing for seconds at about half speed (56 against 114 M
         * instructions per second here), which would make this loop no bound on it. */
        tag_uart_putc((uint8_t)'.');
    }
    tag_uart_puts("DONE ");
    put_u64(spent);
    tag_uart_putc(' ');
    put_u64(TAG_INFER_LOOPS);
    tag_uart_puts("\r\n");
    tag_exit(0);
}
