/*
 * What every UART driver shares: single bytes and strings go through the driver's
 * tag_uart_write (uart_<name>.c), so a driver is init, write, available and getc.
 */
#include <stdint.h>

#include "platform.h"

void tag_uart_putc(uint8_t byte)
{
    tag_uart_write(&byte, 1u);
}

void tag_uart_puts(const char *text)
{
    uint32_t len = 0;
    while (text[len] != '\0') {
        ++len;
    }
    tag_uart_write((const uint8_t *)text, len);
}
