/* tag_link.h: the link layer of the host <-> tag wire protocol, implemented in tag_link.c.
 *
 * Include tag_proto.h, not this file: the generated tag_proto.h defines the protocol's
 * constants (TAG_PROTO_MAX_PAYLOAD, TAG_STR_LEN, ...), then includes this file, then declares the
 * message structs and their pack/unpack functions, which call tag_put_* and tag_get_*.
 * write_c_header() puts both headers in the same folder.
 */
#ifndef TAG_LINK_H
#define TAG_LINK_H

#include <stddef.h>
#include <stdint.h>

#ifndef TAG_PROTO_MAX_PAYLOAD
#error "tag_link.h needs the constants of tag_proto.h: include tag_proto.h instead"
#endif

#define TAG_CRC16_INIT 0xFFFFu /* CRC-16/CCITT-FALSE: poly 0x1021, not reflected, no xorout */

uint16_t tag_crc16_update(uint16_t crc, uint8_t byte);
uint16_t tag_crc16(const uint8_t *data, size_t len);

/* COBS-encode len bytes into out (no delimiter). Returns the encoded length, or 0 if cap is
 * too small; len + len / 254 + 1 bytes always suffice. */
size_t tag_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t cap);

/* Build the payload (type, seq, body, crc) and write COBS(payload) + 0x00 to out. Returns the
 * wire length, or 0 if body_len > TAG_PROTO_MAX_BODY or cap is too small.
 * cap >= TAG_PROTO_MAX_FRAME always suffices. */
size_t tag_frame_write(uint8_t type, uint8_t seq, const uint8_t *body, size_t body_len,
                       uint8_t *out, size_t cap);

/* Incremental receiver: push every byte from the UART. */
typedef enum {
    TAG_RX_MORE = 0,      /* nothing complete yet (also after an empty frame: a flush) */
    TAG_RX_FRAME = 1,     /* a payload with a good CRC is ready: read it before the next push */
    TAG_RX_BAD_FRAME = 2  /* a frame was dropped (COBS, CRC, length or size); count it */
} tag_rx_status_t;

typedef struct {
    uint8_t buf[TAG_PROTO_MAX_PAYLOAD]; /* decoded payload: type, seq, body, crc */
    uint16_t len;       /* bytes decoded so far in the current frame */
    uint16_t frame_len; /* payload length after TAG_RX_FRAME */
    uint8_t code;       /* code byte of the current COBS block; 0 before the first */
    uint8_t left;       /* data bytes left in the current block; 0: next byte is a code */
    uint8_t bad;        /* nonzero: drop bytes up to the next 0x00 */
} tag_rx_t;

void tag_rx_init(tag_rx_t *rx);
tag_rx_status_t tag_rx_push(tag_rx_t *rx, uint8_t byte);
/* Valid after TAG_RX_FRAME until the next push. */
uint8_t tag_rx_type(const tag_rx_t *rx);
uint8_t tag_rx_seq(const tag_rx_t *rx);
const uint8_t *tag_rx_body(const tag_rx_t *rx);
size_t tag_rx_body_len(const tag_rx_t *rx);

/* Little-endian field access; f32 moves the IEEE-754 bit pattern. */
void tag_put_u8(uint8_t *p, uint8_t v);
void tag_put_u16(uint8_t *p, uint16_t v);
void tag_put_u32(uint8_t *p, uint32_t v);
void tag_put_i8(uint8_t *p, int8_t v);
void tag_put_i16(uint8_t *p, int16_t v);
void tag_put_i32(uint8_t *p, int32_t v);
void tag_put_f32(uint8_t *p, float v);
void tag_put_str(uint8_t *p, const char *s); /* TAG_STR_LEN bytes, NUL-padded */
uint8_t tag_get_u8(const uint8_t *p);
uint16_t tag_get_u16(const uint8_t *p);
uint32_t tag_get_u32(const uint8_t *p);
int8_t tag_get_i8(const uint8_t *p);
int16_t tag_get_i16(const uint8_t *p);
int32_t tag_get_i32(const uint8_t *p);
float tag_get_f32(const uint8_t *p);
void tag_get_str(const uint8_t *p, char *s); /* TAG_STR_LEN bytes, not NUL-terminated if full */

#endif /* TAG_LINK_H */
