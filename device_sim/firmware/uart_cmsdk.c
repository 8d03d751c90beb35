/*
 * Polled driver for the CMSDK APB UART0 of the mps2 boards (QEMU hw/char/cmsdk-apb-uart.c).
 * No interrupts and no buffering: the host side of the wire protocol does flow control.
 */
#include <stdint.h>

#include "platform.h"

void tag_uart_init(void)
{
    /* QEMU refuses to transmit with BAUDDIV < 16; a real part divides its PCLK by it. */
    TAG_UART0->BAUDDIV = TAG_UART_PCLK_HZ / TAG_UART_BAUD;
    TAG_UART0->CTRL = TAG_UART_CTRL_TX_EN | TAG_UART_CTRL_RX_EN;
}

void tag_uart_putc(uint8_t byte)
{
    while (TAG_UART0->STATE & TAG_UART_STATE_TX_FULL) {
    }
    TAG_UART0->DATA = byte;
}

void tag_uart_write(const uint8_t *data, uint32_t len)
{
    for (uint32_t i = 0; i < len; ++i) {
        tag_uart_putc(data[i]);
    }
}

void tag_uart_puts(const char *text)
{
    while (*text != '\0') {
        tag_uart_putc((uint8_t)*text++);
    }
}

int tag_uart_available(void)
{
    return (TAG_UART0->STATE & TAG_UART_STATE_RX_FULL) != 0u;
}

int tag_uart_getc(void)
{
    if (!tag_uart_available()) {
        return -1;
    }
    return (int)(TAG_UART0->DATA & 0xFFu);
}
