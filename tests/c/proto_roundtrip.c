/* proto_roundtrip.c: the C half of the C/Python agreement tests in tests/test_protocol.py.
 *
 *   proto_roundtrip frames  wire bytes on stdin -> tag_rx_push -> unpack -> pack ->
 *                           tag_frame_write -> wire bytes on stdout;
 *                           "frames=N bad=B malformed=M" on stderr
 *   proto_roundtrip cobs    raw bytes on stdin -> tag_cobs_encode -> stdout
 *   proto_roundtrip crc     raw bytes on stdin -> "0x%04x" of tag_crc16 on stdout
 */
#include <stdio.h>
#include <string.h>

#include "tag_proto.h"

#define INPUT_MAX 65536

/* Unpack then pack again, so every field goes through the generated C layout. */
#define ROUNDTRIP(lower)                                                     \
    do {                                                                     \
        tag_##lower##_t m;                                                   \
        if (tag_##lower##_unpack(body, len, &m) != 0) {                      \
            return 0;                                                        \
        }                                                                    \
        *out_len = tag_##lower##_pack(&m, out);                              \
        return 1;                                                            \
    } while (0)

/* Returns 1 and the re-packed body if the payload is a known, well-formed message. */
static int repack(uint8_t type, const uint8_t *body, size_t len, uint8_t *out, size_t *out_len)
{
    switch (type) {
    case TAG_MSG_HELLO: ROUNDTRIP(hello);
    case TAG_MSG_RESULT: ROUNDTRIP(result);
    case TAG_MSG_CREDIT: ROUNDTRIP(credit);
    case TAG_MSG_STATS: ROUNDTRIP(stats);
    case TAG_MSG_ERROR: ROUNDTRIP(error);
    case TAG_MSG_PONG: ROUNDTRIP(pong);
    case TAG_MSG_TRACE_CRC: ROUNDTRIP(trace_crc);
    case TAG_MSG_TRACE_TENSOR: ROUNDTRIP(trace_tensor);
    case TAG_MSG_SAMPLES: ROUNDTRIP(samples);
    case TAG_MSG_STATS_REQUEST: ROUNDTRIP(stats_request);
    case TAG_MSG_PING: ROUNDTRIP(ping);
    case TAG_MSG_RESET: ROUNDTRIP(reset);
    case TAG_MSG_TRACE_REQUEST: ROUNDTRIP(trace_request);
    case TAG_MSG_REPLAY: ROUNDTRIP(replay);
    case TAG_MSG_REPLAY_DONE: ROUNDTRIP(replay_done);
    case TAG_MSG_HELLO_REQUEST: ROUNDTRIP(hello_request);
    default: return 0;
    }
}

static int run_frames(const uint8_t *in, size_t n)
{
    tag_rx_t rx;
    uint8_t body[TAG_PROTO_MAX_BODY];
    uint8_t wire[TAG_PROTO_MAX_FRAME];
    unsigned frames = 0, bad = 0, malformed = 0;
    size_t i;
    tag_rx_init(&rx);
    for (i = 0; i < n; i++) {
        tag_rx_status_t status = tag_rx_push(&rx, in[i]);
        size_t body_len = 0, wire_len;
        if (status == TAG_RX_BAD_FRAME) {
            bad++;
        }
        if (status != TAG_RX_FRAME) {
            continue;
        }
        if (!repack(tag_rx_type(&rx), tag_rx_body(&rx), tag_rx_body_len(&rx), body, &body_len)) {
            malformed++;
            continue;
        }
        wire_len = tag_frame_write(tag_rx_type(&rx), tag_rx_seq(&rx), body, body_len, wire,
                                   sizeof wire);
        if (wire_len == 0) {
            fprintf(stderr, "tag_frame_write failed\n");
            return 1;
        }
        fwrite(wire, 1, wire_len, stdout);
        frames++;
    }
    fprintf(stderr, "frames=%u bad=%u malformed=%u\n", frames, bad, malformed);
    return 0;
}

int main(int argc, char **argv)
{
    static uint8_t in[INPUT_MAX];
    static uint8_t out[INPUT_MAX + INPUT_MAX / 254 + 1];
    size_t n = fread(in, 1, sizeof in, stdin);
    if (argc != 2) {
        fprintf(stderr, "usage: %s frames|cobs|crc < input\n", argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "frames") == 0) {
        return run_frames(in, n);
    }
    if (strcmp(argv[1], "cobs") == 0) {
        size_t m = tag_cobs_encode(in, n, out, sizeof out);
        fwrite(out, 1, m, stdout);
        return m == 0;
    }
    if (strcmp(argv[1], "crc") == 0) {
        printf("0x%04x\n", (unsigned)tag_crc16(in, n));
        return 0;
    }
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}
