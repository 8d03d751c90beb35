/*
 * Polled driver for UARTE0 of the Nordic nRF52840: a UART whose bytes move by EasyDMA between
 * RAM and the peripheral (nRF52840 Product Specification, "UARTE"). Renode models it in the
 * same mode (platforms/cpus/nrf52840.repl: uart0 with easyDMA: true).
 *
 * Receive: one-byte DMA transfers. ENDRX says the byte is in RAM; until the next STARTRX the
 * UARTE keeps what arrives in its RX FIFO (four bytes on the chip), so a byte is taken, the
 * event cleared and reception restarted. Transmit: EasyDMA reads RAM only, never flash, so
 * bytes go through a RAM buffer of the driver, one DMA transfer per chunk.
 *
 * Parameters from the target profile's platform: TAG_UART_BASE, TAG_UART_TX_PIN and
 * TAG_UART_RX_PIN (P0.06 and P0.08 on the nRF52840 DK: the debugger's virtual COM port) and
 * TAG_UART_BAUD.
 */
#include <stdint.h>

#include "platform.h"

#if !defined(TAG_UART_BASE) || !defined(TAG_UART_BAUD) || !defined(TAG_UART_TX_PIN) || \
    !defined(TAG_UART_RX_PIN)
#error "TAG_UART_BASE, TAG_UART_BAUD, TAG_UART_TX_PIN and TAG_UART_RX_PIN come from the profile"
#endif

/* BAUDRATE register values of the UARTE (not of the legacy UART, whose table differs). */
#if TAG_UART_BAUD == 115200
#define UARTE_BAUDRATE 0x01D7E000u
#elif TAG_UART_BAUD == 1000000
#define UARTE_BAUDRATE 0x10000000u
#else
#error "uart_nrf_uarte.c knows the BAUDRATE value of 115200 and 1000000 baud only"
#endif

#define REG(offset) (*(volatile uint32_t *)((TAG_UART_BASE) + (offset)))
#define TASKS_STARTRX REG(0x000u)
#define TASKS_STARTTX REG(0x008u)
#define EVENTS_ENDRX REG(0x110u)
#define EVENTS_ENDTX REG(0x120u)
#define EVENTS_ERROR REG(0x124u)
#define ERRORSRC REG(0x480u)
#define ENABLE REG(0x500u)
#define PSEL_RTS REG(0x508u)
#define PSEL_TXD REG(0x50Cu)
#define PSEL_CTS REG(0x510u)
#define PSEL_RXD REG(0x514u)
#define BAUDRATE REG(0x524u)
#define RXD_PTR REG(0x534u)
#define RXD_MAXCNT REG(0x538u)
#define TXD_PTR REG(0x544u)
#define TXD_MAXCNT REG(0x548u)
#define CONFIG REG(0x56Cu)

#define ENABLE_UARTE 8u
#define PSEL_DISCONNECTED 0xFFFFFFFFu
#define TX_CHUNK 64u

/*
 * DMA buffers must be in RAM: the driver's own, not the caller's (which may be in flash).
 *
 * The receive buffer is one byte (MAXCNT) and a guard. Renode 1.15's model of the UARTE writes
 * bytes that arrive between the clearing of ENDRX and the next STARTRX past MAXCNT, one after
 * the other, as many as the host sent at once (the chip keeps them in its FIFO instead). Those
 * bytes are lost, and their frame's CRC fails (the protocol sends it again), but they must not
 * overwrite the driver's neighbours: the guard holds more than the host ever sends unanswered
 * (a window's SAMPLES frames, about 1.6 KB).
 */
#define RX_GUARD 4096u
static volatile uint8_t uarte_rx[1u + RX_GUARD];
static uint8_t uarte_tx_chunk[TX_CHUNK];

static void uarte_start_rx(void)
{
    EVENTS_ENDRX = 0u;
    RXD_PTR = (uint32_t)(uintptr_t)&uarte_rx[0];
    RXD_MAXCNT = 1u;
    TASKS_STARTRX = 1u;
}

void tag_uart_init(void)
{
    ENABLE = 0u;
    PSEL_TXD = (uint32_t)(TAG_UART_TX_PIN); /* bit 31 clear: connected; port 0 */
    PSEL_RXD = (uint32_t)(TAG_UART_RX_PIN);
    PSEL_RTS = PSEL_DISCONNECTED;           /* no hardware flow control: the protocol's credit */
    PSEL_CTS = PSEL_DISCONNECTED;
    BAUDRATE = UARTE_BAUDRATE;
    CONFIG = 0u;                            /* 8 data bits, no parity, one stop bit */
    ENABLE = ENABLE_UARTE;
    uarte_start_rx();
}

void tag_uart_write(const uint8_t *data, uint32_t len)
{
    while (len > 0u) {
        uint32_t n = len < TX_CHUNK ? len : TX_CHUNK;
        for (uint32_t i = 0; i < n; ++i) {
            uarte_tx_chunk[i] = data[i];
        }
        EVENTS_ENDTX = 0u;
        TXD_PTR = (uint32_t)(uintptr_t)uarte_tx_chunk;
        TXD_MAXCNT = n;
        TASKS_STARTTX = 1u;
        while (EVENTS_ENDTX == 0u) {
        }
        data += n;
        len -= n;
    }
}

int tag_uart_available(void)
{
    return EVENTS_ENDRX != 0u;
}

int tag_uart_getc(void)
{
    if (EVENTS_ERROR != 0u) {
        /* Overrun, parity, framing or break: cleared, and the damaged frame is left to the
         * CRC. ERRORSRC is cleared by writing back the bits read. */
        ERRORSRC = ERRORSRC;
        EVENTS_ERROR = 0u;
    }
    if (!tag_uart_available()) {
        return -1;
    }
    int byte = (int)uarte_rx[0];
    uarte_start_rx();
    return byte;
}
