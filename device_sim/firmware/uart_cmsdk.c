/*
 * Polled driver for the CMSDK APB UART of the Arm mps2 boards (QEMU hw/char/cmsdk-apb-uart.c).
 * No interrupts and no buffering: the host side of the wire protocol does flow control.
 *
 * Parameters from the target profile's platform: TAG_UART_BASE, TAG_UART_CLOCK_HZ (the APB
 * clock that divides into the baud rate) and TAG_UART_BAUD.
 */
#include <stdint.h>

#include "platform.h"

#if !defined(TAG_UART_BASE) || !defined(TAG_UART_CLOCK_HZ) || !defined(TAG_UART_BAUD)
#error "TAG_UART_BASE, TAG_UART_CLOCK_HZ and TAG_UART_BAUD come from the target profile"
#endif

/* Register block of the CMSDK APB UART; offsets from the CMSDK technical reference. */
typedef struct {
    volatile uint32_t DATA;      /* 0x00 read: received byte, write: byte to send */
    volatile uint32_t STATE;     /* 0x04 bit0 TX buffer full, bit1 RX buffer full, bits2-3 overrun */
    volatile uint32_t CTRL;      /* 0x08 bit0 TX enable, bit1 RX enable */
    volatile uint32_t INTSTATUS; /* 0x0C interrupt status / clear */
    volatile uint32_t BAUDDIV;   /* 0x10 baud divider, >= 16 (QEMU refuses to send below 16) */
} cmsdk_uart_regs_t;

#define UART ((cmsdk_uart_regs_t *)(TAG_UART_BASE))

#define STATE_TX_FULL 0x1u
#define STATE_RX_FULL 0x2u
#define CTRL_TX_EN 0x1u
#define CTRL_RX_EN 0x2u

void tag_uart_init(void)
{
    /* QEMU refuses to transmit with BAUDDIV < 16; a real part divides its PCLK by it. */
    UART->BAUDDIV = (TAG_UART_CLOCK_HZ) / (TAG_UART_BAUD);
    UART->CTRL = CTRL_TX_EN | CTRL_RX_EN;
}

void tag_uart_write(const uint8_t *data, uint32_t len)
{
    for (uint32_t i = 0; i < len; ++i) {
        while (UART->STATE & STATE_TX_FULL) {
        }
        UART->DATA = data[i];
    }
}

int tag_uart_available(void)
{
    return (UART->STATE & STATE_RX_FULL) != 0u;
}

int tag_uart_getc(void)
{
    if (!tag_uart_available()) {
        return -1;
    }
    return (int)(UART->DATA & 0xFFu);
}
