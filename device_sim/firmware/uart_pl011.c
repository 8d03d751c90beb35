/*
 * Polled driver for an Arm PrimeCell UART (PL011): the UART of TI's CC2538 (Renode's
 * platforms/cpus/cc2538.repl) and, at another base address, of the CC2650 in the collar.
 * No interrupts and no buffering: the host side of the wire protocol does flow control.
 *
 * Parameters from the target profile's platform: TAG_UART_BASE, TAG_UART_CLOCK_HZ (the UART's
 * reference clock, which divides into the baud rate) and TAG_UART_BAUD. Turning the UART's
 * power domain and clock on, and routing its pins, is the SoC's business and differs between
 * the CC2538 and the CC2650: the emulated platform needs neither (see collar.toml).
 */
#include <stdint.h>

#include "platform.h"

#if !defined(TAG_UART_BASE) || !defined(TAG_UART_CLOCK_HZ) || !defined(TAG_UART_BAUD)
#error "TAG_UART_BASE, TAG_UART_CLOCK_HZ and TAG_UART_BAUD come from the target profile"
#endif

/* Register block of the PL011; offsets from the PrimeCell UART (PL011) technical reference. */
typedef struct {
    volatile uint32_t DR;       /* 0x00 data: read the received byte, write a byte to send */
    volatile uint32_t RSR_ECR;  /* 0x04 receive status / error clear */
    uint32_t reserved0[4];      /* 0x08 - 0x14 */
    volatile uint32_t FR;       /* 0x18 flags */
    uint32_t reserved1;         /* 0x1C */
    volatile uint32_t ILPR;     /* 0x20 IrDA low-power counter */
    volatile uint32_t IBRD;     /* 0x24 integer part of the baud divisor */
    volatile uint32_t FBRD;     /* 0x28 fractional part of the baud divisor, in 1/64 */
    volatile uint32_t LCR_H;    /* 0x2C line control */
    volatile uint32_t CR;       /* 0x30 control */
    volatile uint32_t IFLS;     /* 0x34 FIFO interrupt levels */
    volatile uint32_t IMSC;     /* 0x38 interrupt mask */
    volatile uint32_t RIS;      /* 0x3C raw interrupt status */
    volatile uint32_t MIS;      /* 0x40 masked interrupt status */
    volatile uint32_t ICR;      /* 0x44 interrupt clear */
} pl011_regs_t;

#define UART ((pl011_regs_t *)(TAG_UART_BASE))

#define FR_RXFE 0x10u        /* receive FIFO empty */
#define FR_TXFF 0x20u        /* transmit FIFO full */
#define FR_BUSY 0x08u        /* still shifting out */
#define LCR_H_FEN 0x10u      /* FIFOs on: 16 bytes each way rather than one */
#define LCR_H_WLEN_8 0x60u   /* 8 data bits, no parity, one stop bit */
#define CR_UARTEN 0x001u
#define CR_TXE 0x100u
#define CR_RXE 0x200u
#define ICR_ALL 0x7FFu

/* Divisor = clock / (16 x baud) as 16.6 fixed point, rounded: the PL011's own formula. */
#define BAUD_DIVISOR_X64 ((4u * (TAG_UART_CLOCK_HZ) + (TAG_UART_BAUD) / 2u) / (TAG_UART_BAUD))

void tag_uart_init(void)
{
    /* The reference manual's order: disable, wait for the last byte, program, enable. */
    UART->CR = 0u;
    while (UART->FR & FR_BUSY) {
    }
    UART->ICR = ICR_ALL;
    UART->IMSC = 0u;
    UART->IBRD = BAUD_DIVISOR_X64 >> 6;
    UART->FBRD = BAUD_DIVISOR_X64 & 0x3Fu;
    UART->LCR_H = LCR_H_WLEN_8 | LCR_H_FEN; /* written after the divisors: it latches them */
    UART->CR = CR_UARTEN | CR_TXE | CR_RXE;
}

void tag_uart_write(const uint8_t *data, uint32_t len)
{
    for (uint32_t i = 0; i < len; ++i) {
        while (UART->FR & FR_TXFF) {
        }
        UART->DR = data[i];
    }
}

int tag_uart_available(void)
{
    return (UART->FR & FR_RXFE) == 0u;
}

int tag_uart_getc(void)
{
    if (!tag_uart_available()) {
        return -1;
    }
    /* Bits 8-11 are the byte's framing, parity, break and overrun flags: a damaged byte is
     * passed on all the same, and the frame's CRC rejects it. */
    return (int)(UART->DR & 0xFFu);
}
