/*
 * libFuzzer target: the whole tag application (app_main.c, with a tiny exported model) on a
 * fake UART.
 *
 * The input is a script of chunks, [kind][length][payload], so that the fuzzer reaches past
 * the CRC into the application's logic as well as into the receiver:
 *   kind % 3 == 0  the payload's bytes, as they are (garbage, torn frames, stray delimiters)
 *   kind % 3 == 1  a well-formed frame: payload[0] is the type, payload[1] the seq, the rest
 *                  the body (any type, any seq, any body, possibly malformed for its type)
 *   kind % 3 == 2  the line idles for 8 * length polls (the device then repeats HELLO)
 * The application runs until the script ends (its main loop is left with longjmp). Then every
 * byte it sent must decode: each frame with a good CRC, of a device-to-host type, with a body
 * that unpacks. Anything else traps; the sanitizers catch the rest.
 *
 * The platform here implements platform.h for the fuzzer: the UART reads the script and
 * records what is written, the counter advances 1 ms per read (host nanoseconds).
 * Built with -Dmain=tag_app_main and run by tools/fuzz.sh (tests/fuzz/build.py).
 */
#include <setjmp.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "platform.h"
#include "tag_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define SCRIPT_MAX (64u * 1024u)
#define OUTPUT_MAX (1024u * 1024u)
#define IDLE_PER_UNIT 8u
#define IDLE_MARK (-2)
#define NS_PER_READ 1000000u

typedef struct {
    int16_t line[SCRIPT_MAX]; /* a byte 0..255, or IDLE_MARK: one poll finds nothing */
    size_t length;
    size_t next;
    uint8_t output[OUTPUT_MAX];
    size_t written;
    tag_count_t now;
    jmp_buf finished;
} fake_board_t;

static fake_board_t board;

/* ---- platform.h ------------------------------------------------------------------------- */

void tag_uart_init(void)
{
}

void tag_uart_putc(uint8_t byte)
{
    if (board.written < OUTPUT_MAX) {
        board.output[board.written++] = byte;
    }
}

void tag_uart_write(const uint8_t *data, uint32_t len)
{
    for (uint32_t i = 0; i < len; i++) {
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
    return board.next < board.length && board.line[board.next] >= 0;
}

int tag_uart_getc(void)
{
    board.now += NS_PER_READ;
    if (board.next >= board.length) {
        longjmp(board.finished, 1); /* the script is over: leave the main loop */
    }
    int16_t c = board.line[board.next++];
    return c == IDLE_MARK ? -1 : c;
}

void tag_counter_start(void)
{
}

uint8_t tag_counter_unit(void)
{
    return (uint8_t)(TAG_COUNTER_UNIT_ID);
}

tag_count_t tag_counter_now(void)
{
    return board.now;
}

tag_count_t tag_counter_elapsed(tag_count_t since)
{
    return board.now - since;
}

void tag_counter_sync(void)
{
}

uint32_t tag_irq_mask(void)
{
    return 0u;
}

void tag_irq_restore(uint32_t state)
{
    (void)state;
}

uint32_t tag_stack_peak(void)
{
    return 0u;
}

uint32_t tag_stack_reserved(void)
{
    return 0u;
}

uint32_t tag_replay_region(const uint8_t **base)
{
    *base = NULL;
    return 0u; /* no replay image: REPLAY is answered BAD_REPLAY */
}

void tag_exit(int code)
{
    (void)code;
    __builtin_trap(); /* the application never ends by itself */
}

/* ---- the script ------------------------------------------------------------------------- */

static void line_put(int16_t c)
{
    if (board.length < SCRIPT_MAX) {
        board.line[board.length++] = c;
    }
}

static void script(const uint8_t *data, size_t size)
{
    static uint8_t wire[TAG_PROTO_MAX_FRAME];
    size_t i = 0;
    while (i + 2u <= size) {
        uint8_t kind = (uint8_t)(data[i] % 3u);
        size_t len = data[i + 1u];
        const uint8_t *payload = data + i + 2u;
        len = len < size - i - 2u ? len : size - i - 2u;
        i += 2u + len;
        if (kind == 0u) {
            for (size_t k = 0; k < len; k++) {
                line_put(payload[k]);
            }
        } else if (kind == 1u && len >= 2u) {
            size_t body = len - 2u < TAG_PROTO_MAX_BODY ? len - 2u : TAG_PROTO_MAX_BODY;
            size_t n = tag_frame_write(payload[0], payload[1], payload + 2u, body, wire,
                                       sizeof wire);
            for (size_t k = 0; k < n; k++) {
                line_put(wire[k]);
            }
        } else if (kind == 2u) {
            for (size_t k = 0; k < IDLE_PER_UNIT * len; k++) {
                line_put(IDLE_MARK);
            }
        }
    }
}

/* ---- what the device said must decode --------------------------------------------------- */

static int unpacks(const tag_rx_t *rx)
{
    const uint8_t *body = tag_rx_body(rx);
    size_t len = tag_rx_body_len(rx);
    switch (tag_rx_type(rx)) {
    case TAG_MSG_HELLO: {
        tag_hello_t m;
        return tag_hello_unpack(body, len, &m) == 0;
    }
    case TAG_MSG_RESULT: {
        tag_result_t m;
        return tag_result_unpack(body, len, &m) == 0;
    }
    case TAG_MSG_CREDIT: {
        tag_credit_t m;
        return tag_credit_unpack(body, len, &m) == 0;
    }
    case TAG_MSG_STATS: {
        tag_stats_t m;
        return tag_stats_unpack(body, len, &m) == 0;
    }
    case TAG_MSG_ERROR: {
        tag_error_t m;
        return tag_error_unpack(body, len, &m) == 0;
    }
    case TAG_MSG_PONG: {
        tag_pong_t m;
        return tag_pong_unpack(body, len, &m) == 0;
    }
    default:
        return 0; /* not a device-to-host message */
    }
}

static void check_output(void)
{
    tag_rx_t rx;
    tag_rx_init(&rx);
    if (board.written == OUTPUT_MAX) {
        __builtin_trap(); /* a megabyte out for at most 64 KB in: the device is looping */
    }
    for (size_t i = 0; i < board.written; i++) {
        tag_rx_status_t status = tag_rx_push(&rx, board.output[i]);
        if (status == TAG_RX_BAD_FRAME || (status == TAG_RX_FRAME && !unpacks(&rx))) {
            __builtin_trap();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    board.length = board.next = board.written = 0u;
    board.now = 0u;
    script(data, size);
    if (setjmp(board.finished) == 0) {
        (void)tag_app_main();
    }
    check_output();
    return 0;
}
