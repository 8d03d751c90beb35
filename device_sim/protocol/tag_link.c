/* tag_link.c: the link layer of the host <-> tag wire protocol (see messages.toml).
 *
 * Frame on the wire: COBS(payload) + 0x00, payload = type, seq, body, crc16 (little-endian).
 * Plain C99: no allocation, no globals, no libc beyond the integer types; every buffer and its
 * size come from the caller. Declarations are in tag_link.h, which the generated tag_proto.h
 * includes after the protocol's constants and before the message pack/unpack helpers.
 */
#include "tag_proto.h"

/* ---- CRC-16/CCITT-FALSE ----------------------------------------------------------------- */

/* Bitwise rather than a 512-byte table: the collar has 128 KB of flash and frames are short. */
uint16_t tag_crc16_update(uint16_t crc, uint8_t byte)
{
    int bit;
    crc = (uint16_t)(crc ^ ((uint16_t)byte << 8));
    for (bit = 0; bit < 8; bit++) {
        crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
    }
    return crc;
}

uint16_t tag_crc16(const uint8_t *data, size_t len)
{
    uint16_t crc = TAG_CRC16_INIT;
    size_t i;
    for (i = 0; i < len; i++) {
        crc = tag_crc16_update(crc, data[i]);
    }
    return crc;
}

/* ---- COBS encoding ---------------------------------------------------------------------- */

/* Streams bytes into out, so a frame is encoded without first building its payload. */
typedef struct {
    uint8_t *out;
    size_t cap;
    size_t n;        /* bytes written, including the open block's code byte */
    size_t code_at;  /* where the open block's code byte goes */
    uint8_t code;    /* 1 + data bytes in the open block */
    int overflow;
} cobs_writer_t;

static void cobs_emit(cobs_writer_t *w, uint8_t byte)
{
    if (w->n < w->cap) {
        w->out[w->n] = byte;
    } else {
        w->overflow = 1;
    }
    w->n++;
}

static void cobs_close_block(cobs_writer_t *w)
{
    if (w->code_at < w->cap) {
        w->out[w->code_at] = w->code;
    }
    w->code_at = w->n;
    cobs_emit(w, 0); /* placeholder for the next block's code */
    w->code = 1;
}

static void cobs_begin(cobs_writer_t *w, uint8_t *out, size_t cap)
{
    w->out = out;
    w->cap = cap;
    w->n = 0;
    w->code_at = 0;
    w->code = 1;
    w->overflow = 0;
    cobs_emit(w, 0);
}

static void cobs_put(cobs_writer_t *w, uint8_t byte)
{
    if (byte == 0) {
        cobs_close_block(w); /* the zero is implied by the block boundary */
        return;
    }
    cobs_emit(w, byte);
    w->code++;
    if (w->code == 0xFF) {
        cobs_close_block(w); /* full block of 254: no implied zero */
    }
}

/* Returns the encoded length, or 0 if it did not fit. */
static size_t cobs_end(cobs_writer_t *w)
{
    if (w->code_at < w->cap) {
        w->out[w->code_at] = w->code;
    }
    return w->overflow ? 0 : w->n;
}

size_t tag_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    cobs_writer_t w;
    size_t i;
    cobs_begin(&w, out, cap);
    for (i = 0; i < len; i++) {
        cobs_put(&w, in[i]);
    }
    return cobs_end(&w);
}

/* ---- Frame writer ----------------------------------------------------------------------- */

static uint16_t frame_put(cobs_writer_t *w, uint16_t crc, uint8_t byte)
{
    cobs_put(w, byte);
    return tag_crc16_update(crc, byte);
}

size_t tag_frame_write(uint8_t type, uint8_t seq, const uint8_t *body, size_t body_len,
                       uint8_t *out, size_t cap)
{
    cobs_writer_t w;
    uint16_t crc = TAG_CRC16_INIT;
    size_t i, n;
    if (body_len > TAG_PROTO_MAX_BODY) {
        return 0;
    }
    cobs_begin(&w, out, cap);
    crc = frame_put(&w, crc, type);
    crc = frame_put(&w, crc, seq);
    for (i = 0; i < body_len; i++) {
        crc = frame_put(&w, crc, body[i]);
    }
    cobs_put(&w, (uint8_t)(crc & 0xFFu));
    cobs_put(&w, (uint8_t)(crc >> 8));
    n = cobs_end(&w);
    if (n == 0 || n >= cap) {
        return 0; /* no room for the payload or for the delimiter */
    }
    out[n] = 0x00;
    return n + 1;
}

/* ---- Frame receiver --------------------------------------------------------------------- */

void tag_rx_init(tag_rx_t *rx)
{
    rx->len = 0;
    rx->frame_len = 0;
    rx->code = 0;
    rx->left = 0;
    rx->bad = 0;
}

static void rx_append(tag_rx_t *rx, uint8_t byte)
{
    if (rx->len >= TAG_PROTO_MAX_PAYLOAD) {
        rx->bad = 1; /* oversize: drop the rest of this frame */
        return;
    }
    rx->buf[rx->len] = byte;
    rx->len++;
}

static tag_rx_status_t rx_end_of_frame(tag_rx_t *rx)
{
    int started = rx->code != 0;
    int ok = !rx->bad && rx->left == 0 && rx->len >= 4;
    if (ok) {
        uint16_t stated = tag_get_u16(rx->buf + rx->len - 2);
        ok = stated == tag_crc16(rx->buf, (size_t)rx->len - 2);
    }
    rx->frame_len = ok ? rx->len : 0;
    rx->len = 0;
    rx->code = 0;
    rx->left = 0;
    rx->bad = 0;
    if (!started) {
        return TAG_RX_MORE; /* empty frame: a flush, not an error */
    }
    return ok ? TAG_RX_FRAME : TAG_RX_BAD_FRAME;
}

tag_rx_status_t tag_rx_push(tag_rx_t *rx, uint8_t byte)
{
    if (byte == 0x00) {
        return rx_end_of_frame(rx);
    }
    if (rx->bad) {
        return TAG_RX_MORE;
    }
    if (rx->left > 0) {
        rx_append(rx, byte);
        rx->left--;
        return TAG_RX_MORE;
    }
    /* A code byte: the previous block, unless it was full, ended with an implied zero. */
    if (rx->code != 0 && rx->code != 0xFF) {
        rx_append(rx, 0);
    }
    rx->code = byte;
    rx->left = (uint8_t)(byte - 1);
    return TAG_RX_MORE;
}

uint8_t tag_rx_type(const tag_rx_t *rx)
{
    return rx->buf[0];
}

uint8_t tag_rx_seq(const tag_rx_t *rx)
{
    return rx->buf[1];
}

const uint8_t *tag_rx_body(const tag_rx_t *rx)
{
    return rx->buf + 2;
}

size_t tag_rx_body_len(const tag_rx_t *rx)
{
    return rx->frame_len >= 4 ? (size_t)rx->frame_len - 4 : 0;
}

/* ---- Little-endian fields --------------------------------------------------------------- */

/* Byte by byte, never through a cast pointer: bodies are unaligned and the M3 faults on some
 * unaligned accesses; the compiler still folds these into single loads where it may. */
void tag_put_u8(uint8_t *p, uint8_t v)
{
    p[0] = v;
}

void tag_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)(v >> 8);
}

void tag_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)(v >> 24);
}

void tag_put_i8(uint8_t *p, int8_t v)
{
    p[0] = (uint8_t)v;
}

void tag_put_i16(uint8_t *p, int16_t v)
{
    tag_put_u16(p, (uint16_t)v);
}

void tag_put_i32(uint8_t *p, int32_t v)
{
    tag_put_u32(p, (uint32_t)v);
}

void tag_put_f32(uint8_t *p, float v)
{
    union { float f; uint32_t u; } bits; /* C99 allows type punning through a union */
    bits.f = v;
    tag_put_u32(p, bits.u);
}

void tag_put_str(uint8_t *p, const char *s)
{
    size_t i;
    int ended = 0;
    for (i = 0; i < TAG_STR_LEN; i++) {
        ended = ended || s[i] == '\0';
        p[i] = ended ? 0 : (uint8_t)s[i];
    }
}

uint8_t tag_get_u8(const uint8_t *p)
{
    return p[0];
}

uint16_t tag_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | ((uint16_t)p[1] << 8));
}

uint32_t tag_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16)
           | ((uint32_t)p[3] << 24);
}

/* Unsigned to signed conversion of an out-of-range value is implementation-defined in C99;
 * GCC and Clang define it as modulo 2^N, which is what the wire needs. */
int8_t tag_get_i8(const uint8_t *p)
{
    return (int8_t)p[0];
}

int16_t tag_get_i16(const uint8_t *p)
{
    return (int16_t)tag_get_u16(p);
}

int32_t tag_get_i32(const uint8_t *p)
{
    return (int32_t)tag_get_u32(p);
}

float tag_get_f32(const uint8_t *p)
{
    union { float f; uint32_t u; } bits;
    bits.u = tag_get_u32(p);
    return bits.f;
}

void tag_get_str(const uint8_t *p, char *s)
{
    size_t i;
    for (i = 0; i < TAG_STR_LEN; i++) {
        s[i] = (char)p[i];
    }
}
