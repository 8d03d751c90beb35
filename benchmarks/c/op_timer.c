/*
 * Instructions (the counter's unit) per operation of one inference, for benchmarks/kernels.py.
 * Built with the model's C and -DTAG_MODEL_TRACE: the model calls tag_model_trace after each
 * operation, and the hook charges the time since the previous call to that operation. Prints
 * "OP <layer> <count> <calls>" per operation, "HOOK <count> <calls>" (what the hook itself
 * costs, measured over calls with nothing between them) and "TOTAL <count> 1" over the UART,
 * then exits.
 */
#include <stdint.h>

#include "platform.h"
#include "tag_model.h"

static tag_model_t model;
static int16_t window[TAG_MODEL_WINDOW * TAG_MODEL_AXES];
static tag_count_t spent[TAG_MODEL_TRACE_LAYERS];
static uint32_t calls[TAG_MODEL_TRACE_LAYERS];
static tag_count_t since;

#define HOOK_CALLS 1000 /* enough that the counter's tick does not matter */

void tag_model_trace(uint8_t layer, uint16_t step, const void *values, uint8_t width,
                     uint16_t count)
{
    (void)step, (void)values, (void)width, (void)count;
    spent[layer] += tag_counter_elapsed(since);
    calls[layer] += 1;
    since = tag_counter_now();
}

void tag_fault_report(uint32_t pc, uint32_t cfsr)
{
    (void)pc, (void)cfsr;
    tag_uart_puts("FAULT\r\n");
}

static void put_u64(const char *label, uint32_t layer, int with_layer, tag_count_t value,
                    uint32_t n)
{
    char digits[24];
    tag_uart_puts(label);
    if (with_layer) {
        tag_uart_putc(' ');
        tag_uart_putc((uint8_t)('0' + layer / 10));
        tag_uart_putc((uint8_t)('0' + layer % 10));
    }
    for (int pass = 0; pass < 2; ++pass) {
        uint64_t v = pass == 0 ? value : n;
        int k = 0;
        do {
            digits[k++] = (char)('0' + v % 10u);
            v /= 10u;
        } while (v != 0u);
        tag_uart_putc(' ');
        while (k > 0) {
            tag_uart_putc((uint8_t)digits[--k]);
        }
    }
    tag_uart_puts("\r\n");
}

int main(void)
{
    tag_uart_init();
    tag_counter_start();
    uint32_t state = 12345u; /* a window of ±1 g noise around 1 g on z, the same every run */
    for (int i = 0; i < TAG_MODEL_WINDOW * TAG_MODEL_AXES; ++i) {
        state = state * 1664525u + 1013904223u;
        window[i] = (int16_t)((int32_t)(state >> 20) - 2048 + (i % 3 == 2 ? 4096 : 0));
    }
    tag_model_init(&model);
    since = tag_counter_now();
    for (int k = 0; k < HOOK_CALLS; ++k) {
        tag_model_trace(0, 0, 0, 0, 0); /* nothing between two hooks: the hook's own cost */
    }
    const tag_count_t hook = spent[0];
    spent[0] = 0, calls[0] = 0;
    const tag_count_t started = tag_counter_now();
    since = started;
    tag_model_run(&model, window);
    const tag_count_t total = tag_counter_elapsed(started);
    for (uint32_t layer = 0; layer < TAG_MODEL_TRACE_LAYERS; ++layer) {
        put_u64("OP", layer, 1, spent[layer], calls[layer]);
    }
    put_u64("HOOK", 0, 0, hook, HOOK_CALLS);
    put_u64("TOTAL", 0, 0, total, 1);
    return 0;
}
