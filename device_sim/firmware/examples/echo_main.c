/*
 * Example application for the platform-layer tests (tests/test_firmware.py), not a product.
 *
 * Prints a boot line, then echoes every byte it receives, except command bytes:
 *   0x01  run a fixed busy loop and print "COUNT <n> <unit>"
 *   0x02  print "STACK <peak> <reserved>" (bytes)
 *   0x03  call a function that uses about 1 KB of stack, then print "DEEP <checksum>"
 *   0x04  read an unmapped address (BusFault)
 *   0x05  execute an undefined instruction (UsageFault)
 *   0x06  exit through semihosting with code 7
 * A fault prints "FAULT pc=0x........ cfsr=0x........" and ends the run.
 */
#include <stdint.h>

#include "platform.h"

#ifndef TAG_TARGET_NAME
#define TAG_TARGET_NAME "unknown"
#endif

#define CMD_COUNT 0x01
#define CMD_STACK 0x02
#define CMD_DEEP 0x03
#define CMD_FAULT_BUS 0x04
#define CMD_FAULT_UNDEF 0x05
#define CMD_EXIT 0x06

#define BUSY_LOOP_ITERATIONS 10000u
#define DEEP_BYTES 1024u
/* Nothing is mapped here (the target profile's platform says where): a load raises a precise
 * BusFault. */
#define UNMAPPED_ADDRESS TAG_UNMAPPED_ADDRESS

static void put_u32(uint32_t value)
{
    char digits[10];
    int n = 0;
    do {
        digits[n++] = (char)('0' + value % 10u);
        value /= 10u;
    } while (value != 0u);
    while (n > 0) {
        tag_uart_putc((uint8_t)digits[--n]);
    }
}

static void put_hex32(uint32_t value)
{
    static const char hex[] = "0123456789abcdef";
    tag_uart_puts("0x");
    for (int shift = 28; shift >= 0; shift -= 4) {
        tag_uart_putc((uint8_t)hex[(value >> shift) & 0xFu]);
    }
}

void tag_fault_report(uint32_t pc, uint32_t cfsr)
{
    tag_uart_puts("FAULT pc=");
    put_hex32(pc);
    tag_uart_puts(" cfsr=");
    put_hex32(cfsr);
    tag_uart_puts("\r\n");
}

/* noinline keeps the loop a separate, identical piece of code every time it is measured. */
__attribute__((noinline)) static void busy_loop(uint32_t iterations)
{
    for (volatile uint32_t i = 0; i < iterations; ++i) {
    }
}

/* The unit the counter counts in: counter_dwt.c decides at boot (cycles, or its fallback). */
static const char *counter_unit_text(void)
{
#ifdef TAG_COUNTER_FALLBACK_UNIT
    if (tag_counter_unit() != (uint8_t)(TAG_COUNTER_UNIT_ID)) {
        return TAG_COUNTER_FALLBACK_UNIT;
    }
#endif
    return TAG_COUNTER_UNIT;
}

static void report_count(void)
{
    tag_counter_sync();
    tag_count_t start = tag_counter_now();
    busy_loop(BUSY_LOOP_ITERATIONS);
    tag_count_t elapsed = tag_counter_elapsed(start);
    tag_uart_puts("COUNT ");
    put_u32((uint32_t)elapsed);
    tag_uart_putc(' ');
    tag_uart_puts(counter_unit_text());
    tag_uart_puts("\r\n");
}

static void report_stack(void)
{
    tag_uart_puts("STACK ");
    put_u32(tag_stack_peak());
    tag_uart_putc(' ');
    put_u32(tag_stack_reserved());
    tag_uart_puts("\r\n");
}

__attribute__((noinline)) static uint32_t deep_call(void)
{
    volatile uint8_t scratch[DEEP_BYTES];
    uint32_t sum = 0u;
    for (uint32_t i = 0; i < DEEP_BYTES; ++i) {
        scratch[i] = (uint8_t)i;
    }
    for (uint32_t i = 0; i < DEEP_BYTES; ++i) {
        sum += scratch[i];
    }
    return sum;
}

__attribute__((noinline)) static uint32_t fault_bus(void)
{
    return *(volatile uint32_t *)UNMAPPED_ADDRESS;
}

__attribute__((noinline)) static void fault_undef(void)
{
    __asm volatile("udf #0");
}

int main(void)
{
    tag_uart_init();
    tag_counter_start();
    tag_uart_puts("BOOT echo target=" TAG_TARGET_NAME " unit=");
    tag_uart_puts(counter_unit_text());
    tag_uart_puts("\r\n");

    for (;;) {
        int c = tag_uart_getc();
        switch (c) {
        case -1:
            break;
        case CMD_COUNT:
            report_count();
            break;
        case CMD_STACK:
            report_stack();
            break;
        case CMD_DEEP:
            tag_uart_puts("DEEP ");
            put_u32(deep_call());
            tag_uart_puts("\r\n");
            break;
        case CMD_FAULT_BUS:
            put_u32(fault_bus()); /* not reached */
            break;
        case CMD_FAULT_UNDEF:
            fault_undef();
            break;
        case CMD_EXIT:
            return 7;
        default:
            tag_uart_putc((uint8_t)c);
            break;
        }
    }
}
