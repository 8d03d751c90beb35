/*
 * libFuzzer target: the firmware's frame receiver (tag_link.c) on any byte stream.
 *
 * Every byte goes through tag_rx_push, as the UART delivers it. For every frame it accepts:
 * the payload is within TAG_PROTO_MAX_PAYLOAD and carries a good CRC, and writing the same
 * type, seq and body again with tag_frame_write gives a frame that a fresh receiver accepts
 * with the very same payload. Anything else traps (a crash libFuzzer reports), as do the
 * sanitizers on any out-of-bounds access or undefined behaviour.
 *
 * Built and run by tools/fuzz.sh (tests/fuzz/build.py).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tag_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_frame(const tag_rx_t *rx)
{
    static uint8_t wire[TAG_PROTO_MAX_FRAME];
    size_t len = rx->frame_len;
    if (len < 4u || len > TAG_PROTO_MAX_PAYLOAD) {
        __builtin_trap();
    }
    uint16_t stated = (uint16_t)(rx->buf[len - 2u] | (rx->buf[len - 1u] << 8));
    if (stated != tag_crc16(rx->buf, len - 2u)) {
        __builtin_trap();
    }
    size_t n = tag_frame_write(tag_rx_type(rx), tag_rx_seq(rx), tag_rx_body(rx),
                               tag_rx_body_len(rx), wire, sizeof wire);
    if (n == 0u || wire[n - 1u] != 0x00u) {
        __builtin_trap();
    }
    tag_rx_t again;
    tag_rx_init(&again);
    int frames = 0;
    for (size_t i = 0; i < n; i++) {
        tag_rx_status_t status = tag_rx_push(&again, wire[i]);
        if (status == TAG_RX_BAD_FRAME) {
            __builtin_trap();
        }
        if (status == TAG_RX_FRAME) {
            frames++;
            if (again.frame_len != len || memcmp(again.buf, rx->buf, len) != 0) {
                __builtin_trap();
            }
        }
    }
    if (frames != 1) {
        __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tag_rx_t rx;
    tag_rx_init(&rx);
    for (size_t i = 0; i < size; i++) {
        if (tag_rx_push(&rx, data[i]) == TAG_RX_FRAME) {
            check_frame(&rx);
        }
    }
    return 0;
}
