/*
 * The tag application: receives accelerometer samples over the wire protocol, classifies every
 * window with the exported model and sends the results back (see messages.toml).
 *
 *   boot      0x00 (flush), then HELLO with seq 0, repeated about every 0.25 s until the host's
 *             first frame; the device's seq counts every frame it sends.
 *   HELLO_REQUEST  whatever its seq: a new host. The link starts again as at boot (host seq 0
 *             expected next, device seq 0, STATS counters zero, the stream as after RESET),
 *             then HELLO.
 *   SAMPLES   accepted in host seq order into a ring of TAG_MODEL_WINDOW samples. At sample
 *             counts W, W+H, W+2H, ... since boot or RESET (W = TAG_MODEL_WINDOW, H = TAG_HOP)
 *             the ring is unrolled into a window, the model runs, timed with the platform
 *             counter, and RESULT then CREDIT go out. A window may end inside a frame: the
 *             inference runs at that exact sample and the rest of the frame follows.
 *   credit    CREDIT(limit): the host may send samples until it has sent `limit` since boot or
 *             RESET (mod 65536). The limit is always the next inference point (W, then W + H,
 *             ...), so nothing is on the wire while the model runs and a polled UART cannot
 *             overrun. A SAMPLES frame beyond the limit is dropped whole: ERROR(OVERFLOW,
 *             detail = its sample count).
 *   errors    a torn or corrupted frame: ERROR(BAD_FRAME); a good frame out of order: dropped,
 *             ERROR(BAD_SEQUENCE, detail = the seq it had). Each error carries the host seq
 *             the device expects, so the host resends from there (go-back-N).
 *             A dropped frame opens a gap; BAD_SEQUENCE
 *             is sent once per gap, and not at all after a BAD_FRAME or OVERFLOW already
 *             reported it, until the expected frame is accepted. Every accepted host frame,
 *             whatever its type, advances the expected seq; an unknown type or a malformed
 *             body is then answered with ERROR(BAD_MESSAGE, detail = type).
 *   PING      PONG with the same token, then CREDIT. STATS_REQUEST: STATS. RESET: the ring,
 *             the window index and the sample count start again from zero; CREDIT(W).
 *   REPLAY    bulk replay: the image in the platform's replay region (tag_replay_region; layout
 *             in device_sim/replay.py) is checked, then CREDIT, or ERROR(BAD_REPLAY, detail =
 *             what is wrong). Each segment is then fed sample by sample through the same ring
 *             and inference as SAMPLES, its window state reset at its start as by RESET, and
 *             RESULT frames (window_index counting on across segments) go out without CREDIT;
 *             REPLAY_DONE ends it, and the stream is then as after RESET.
 *   faults    tag_fault_report() sends ERROR(HARD_FAULT, detail = CFSR, pc); the platform stops.
 *   trace     only with TAG_MODEL_TRACE (a fixed-point model): the model calls tag_model_trace
 *             after each operation (models/export.py), and the application sends TRACE_CRC for
 *             every tensor, and the tensor itself as TRACE_TENSOR chunks when a TRACE_REQUEST
 *             asked for a dump of its (layer, step); all before the window's RESULT, so they
 *             are part of what the inference costs (a trace build's latency means nothing).
 *             TRACE_REQUEST: CREDIT. Without TAG_MODEL_TRACE, TRACE_REQUEST is BAD_MESSAGE.
 *
 * Compile-time inputs: the platform (platform.h), the generated protocol header (tag_proto.h),
 * the exported model (tag_model.h) and -D definitions from device_sim/appbuild.py:
 * TAG_TARGET_NAME, TAG_BUILD_ID, TAG_SAMPLE_RATE_MHZ, TAG_HOP, TAG_CLOCK_HZ, TAG_WINDOW,
 * TAG_MODEL_TRACE for a trace build and, for tests only, TAG_TEST_HOOKS (a SAMPLES frame whose
 * first sample is TAG_TEST_FAULT_SAMPLE makes a deliberate bus fault).
 *
 * No dynamic allocation: the whole state is one app_t, static in main() and passed by pointer.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "platform.h"
#include "tag_model.h"
#include "tag_proto.h"

#ifndef TAG_TARGET_NAME
#error "TAG_TARGET_NAME is set by device_sim/appbuild.py"
#endif
#ifndef TAG_BUILD_ID
#define TAG_BUILD_ID "unversioned"
#endif
#ifndef TAG_SAMPLE_RATE_MHZ
#error "TAG_SAMPLE_RATE_MHZ (sample rate in millihertz) is set by device_sim/appbuild.py"
#endif
#ifndef TAG_HOP
#error "TAG_HOP (samples between window starts) is set by device_sim/appbuild.py"
#endif
#ifndef TAG_CLOCK_HZ
#error "TAG_CLOCK_HZ is set by device_sim/crossbuild.py"
#endif
#if defined(TAG_WINDOW) && (TAG_WINDOW != TAG_MODEL_WINDOW)
#error "the model's window differs from the target's window"
#endif
#if (TAG_HOP) < 1 || (TAG_HOP) > TAG_MODEL_WINDOW
#error "TAG_HOP must be between 1 and TAG_MODEL_WINDOW"
#endif
#if TAG_MODEL_CLASSES > TAG_RESULT_LOGITS_MAX_COUNT
#error "too many classes for RESULT.logits"
#endif
#if TAG_MODEL_AXES != TAG_SAMPLES_AXES
#error "the model and the protocol disagree on the number of axes"
#endif

/* ---- what HELLO announces --------------------------------------------------------------- */

/* The platform's counter unit (platform.h) as a HELLO.counter_unit value. */

#if TAG_MODEL_LOGIT_FLOAT
#define APP_LOGIT_TYPE TAG_LOGIT_FLOAT32
#define APP_LOGIT_FRAC 0
#elif TAG_NN_WORD_BITS == 16
#define APP_LOGIT_TYPE TAG_LOGIT_INT16
#define APP_LOGIT_FRAC TAG_MODEL_LOGIT_FRAC
#elif TAG_NN_WORD_BITS == 8
#define APP_LOGIT_TYPE TAG_LOGIT_INT8
#define APP_LOGIT_FRAC TAG_MODEL_LOGIT_FRAC
#else
#error "unknown logit type"
#endif

/* Until the host's first frame, HELLO is repeated this often (in counter units, about 0.25 s):
 * a host that opens its port a moment after boot (pyserial empties its input when it opens)
 * still hears an announcement. */
#if defined(TAG_PLATFORM_HOST)
#define APP_HELLO_PERIOD ((tag_count_t)250000000u)
#else
#define APP_HELLO_PERIOD ((tag_count_t)(TAG_CLOCK_HZ / 4u))
#endif

/* The first limit: the samples of the first window. */
#define APP_RX_CAPACITY ((uint16_t)TAG_MODEL_WINDOW)

/* ---- test hook -------------------------------------------------------------------------- */

#ifdef TAG_TEST_HOOKS
/* First sample of a SAMPLES frame that triggers the fault; no accelerometer sends it. */
#define TAG_TEST_FAULT_X (-32768)
#define TAG_TEST_FAULT_Y (-32768)
#define TAG_TEST_FAULT_Z 12345
/* An address nothing is mapped at (a precise BusFault), from the target profile's platform;
 * nothing is mapped there in a host process either. */
#ifndef TAG_UNMAPPED_ADDRESS
#error "TAG_UNMAPPED_ADDRESS comes from the target profile's platform"
#endif
#define TAG_TEST_FAULT_ADDRESS TAG_UNMAPPED_ADDRESS
#endif

/* ---- state ------------------------------------------------------------------------------ */

typedef struct {
    uint32_t windows;    /* inferences since boot */
    uint32_t samples;    /* samples accepted since boot */
    uint32_t bad_frames; /* frames dropped by the link layer */
    uint32_t overruns;   /* SAMPLES frames dropped for exceeding the credit */
} app_stats_t;

#ifdef TAG_MODEL_TRACE
typedef struct {
    uint8_t dump;    /* a TRACE_REQUEST asked for (layer, step) in full */
    uint8_t layer;
    uint16_t step;
    tag_trace_tensor_t tensor;                /* the chunk being sent: here, not on the stack */
    uint8_t body[TAG_TRACE_TENSOR_BODY_MAX];  /* the model's frames are below the hook's */
} app_trace_t;
#endif

typedef struct {
    tag_rx_t rx;                                         /* frame receiver */
    tag_model_t model;                                   /* the model's working memory */
    int16_t ring[TAG_MODEL_WINDOW][TAG_MODEL_AXES];      /* the last W samples */
    int16_t window[TAG_MODEL_WINDOW][TAG_MODEL_AXES];    /* the ring unrolled, oldest first */
    tag_samples_t samples;                               /* the SAMPLES frame being handled */
    uint8_t tx[TAG_PROTO_MAX_FRAME];                     /* the frame being sent */
    uint32_t ring_head;      /* where the next sample goes (the oldest once the ring is full) */
    uint32_t until_window;   /* samples still needed before the next inference */
    uint32_t window_index;   /* of the next RESULT, since boot or RESET */
    uint16_t consumed;       /* samples accepted since boot or RESET, mod 65536 */
    uint16_t limit;          /* the host may send up to this many: the next inference point */
    uint8_t tx_seq;          /* seq of the next device frame */
    uint8_t expected_seq;    /* seq of the next host frame to accept */
    uint8_t ack_seq;         /* seq of the last host frame accepted */
    uint8_t in_gap;          /* a host frame was dropped and already reported */
    uint8_t host_heard;      /* a frame (good or bad) has come from the host: stop announcing */
    app_stats_t stats;
#ifdef TAG_MODEL_TRACE
    app_trace_t trace;
#endif
} app_t;

/* The one file-scope variable: the fault handler (and the model's trace hook) have no other
 * way to reach the state. */
static app_t *fault_app;

/* ---- sending ---------------------------------------------------------------------------- */

static void app_send(app_t *app, uint8_t type, const uint8_t *body, size_t body_len)
{
    size_t n = tag_frame_write(type, app->tx_seq, body, body_len, app->tx, sizeof app->tx);
    if (n > 0u) {
        tag_uart_write(app->tx, (uint32_t)n);
    }
    app->tx_seq++; /* wraps at 256, as the protocol says */
}

/* A str16 field: up to TAG_STR_LEN characters, NUL-padded, no terminator when full. */
static void copy_str16(char *field, const char *text)
{
    size_t i;
    int ended = 0;
    for (i = 0u; i < TAG_STR_LEN; i++) {
        ended = ended || text[i] == '\0';
        field[i] = ended ? '\0' : text[i];
    }
}

static void app_send_hello(app_t *app)
{
    tag_hello_t m;
    uint8_t body[TAG_HELLO_BODY_MAX];
    memset(&m, 0, sizeof m);
    m.protocol_version = TAG_PROTO_VERSION;
    copy_str16(m.target, TAG_TARGET_NAME);
    copy_str16(m.build_id, TAG_BUILD_ID);
    copy_str16(m.model_hash, TAG_MODEL_HASH);
    copy_str16(m.model_variant, TAG_MODEL_VARIANT);
    m.sample_rate_mhz = (uint32_t)(TAG_SAMPLE_RATE_MHZ);
    m.window = (uint16_t)TAG_MODEL_WINDOW;
    m.hop = (uint16_t)(TAG_HOP);
    m.clock_hz = (uint32_t)(TAG_CLOCK_HZ);
    m.counter_unit = tag_counter_unit();
    m.n_classes = (uint8_t)TAG_MODEL_CLASSES;
    m.logit_type = (uint8_t)APP_LOGIT_TYPE;
    m.logit_frac = (int8_t)APP_LOGIT_FRAC;
    m.input_frac = (int8_t)TAG_MODEL_INPUT_FRAC;
    m.rx_capacity = APP_RX_CAPACITY;
    app_send(app, TAG_MSG_HELLO, body, tag_hello_pack(&m, body));
}

static void app_send_error(app_t *app, uint8_t code, uint32_t detail, uint32_t pc)
{
    tag_error_t m;
    uint8_t body[TAG_ERROR_BODY_MAX];
    m.code = code;
    m.expected_seq = app->expected_seq;
    m.detail = detail;
    m.pc = pc;
    app_send(app, TAG_MSG_ERROR, body, tag_error_pack(&m, body));
}

static void app_send_credit(app_t *app)
{
    tag_credit_t m;
    uint8_t body[TAG_CREDIT_BODY_MAX];
    m.limit = app->limit;
    m.ack_seq = app->ack_seq;
    app_send(app, TAG_MSG_CREDIT, body, tag_credit_pack(&m, body));
}

static void app_send_stats(app_t *app)
{
    tag_stats_t m;
    uint8_t body[TAG_STATS_BODY_MAX];
    m.stack_peak = tag_stack_peak();
    m.stack_size = tag_stack_reserved();
    m.windows = app->stats.windows;
    m.samples = app->stats.samples;
    m.bad_frames = app->stats.bad_frames;
    m.overruns = app->stats.overruns;
    app_send(app, TAG_MSG_STATS, body, tag_stats_pack(&m, body));
}

static void app_send_pong(app_t *app, uint32_t token)
{
    tag_pong_t m;
    uint8_t body[TAG_PONG_BODY_MAX];
    m.token = token;
    app_send(app, TAG_MSG_PONG, body, tag_pong_pack(&m, body));
}

/* Fixed-point logits widen to i32; float logits travel as their IEEE-754 bit pattern. */
static int32_t logit_word(tag_logit_t logit)
{
#if TAG_MODEL_LOGIT_FLOAT
    union {
        float f;
        uint32_t u;
    } bits;
    bits.f = logit;
    return (int32_t)bits.u;
#else
    return (int32_t)logit;
#endif
}

/* ---- layer trace ------------------------------------------------------------------------ */

#ifdef TAG_MODEL_TRACE
#if TAG_MODEL_LOGIT_FLOAT
#error "TAG_MODEL_TRACE needs a fixed-point model (q16 or q8)"
#endif
#define APP_CRC32_INIT 0xFFFFFFFFu
#define APP_CRC32_POLY 0xEDB88320u /* CRC-32/ISO-HDLC, reflected: what zlib.crc32 computes */

/* Both bytes of a value as int16 little-endian, bit by bit: no table in flash for a debug
 * build, and a few instructions per bit are nothing next to the UART. */
static uint32_t app_crc32_i16(uint32_t crc, int16_t value)
{
    uint16_t bits = (uint16_t)value;
    for (int byte = 0; byte < 2; byte++) {
        crc ^= (uint32_t)((bits >> (8 * byte)) & 0xFFu);
        for (int k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (APP_CRC32_POLY & (0u - (crc & 1u)));
        }
    }
    return crc;
}

/* Value i of a traced tensor of int8_t (width 1) or int16_t words, sign-extended. */
static int16_t app_trace_value(const void *values, uint8_t width, uint16_t i)
{
    return width == 1u ? (int16_t)((const int8_t *)values)[i] : ((const int16_t *)values)[i];
}

/* The whole tensor as TRACE_TENSOR chunks (one, empty, for an empty tensor). */
static void app_send_tensor(app_t *app, uint8_t layer, uint16_t step, const void *values,
                            uint8_t width, uint16_t count)
{
    tag_trace_tensor_t *m = &app->trace.tensor;
    uint16_t offset = 0u;
    do {
        uint16_t n = (uint16_t)(count - offset);
        if (n > TAG_TRACE_TENSOR_VALUES_MAX_COUNT) {
            n = TAG_TRACE_TENSOR_VALUES_MAX_COUNT;
        }
        m->window_index = app->window_index;
        m->layer = layer;
        m->step = step;
        m->offset = offset;
        m->total = count;
        m->values_count = (uint8_t)n;
        for (uint16_t i = 0u; i < n; i++) {
            m->values[i] = app_trace_value(values, width, (uint16_t)(offset + i));
        }
        app_send(app, TAG_MSG_TRACE_TENSOR, app->trace.body,
                 tag_trace_tensor_pack(m, app->trace.body));
        offset = (uint16_t)(offset + n);
    } while (offset < count);
}

/* The model's hook (tag_model.h): called inside tag_model_run, after operation `layer` wrote
 * its output for time step `step`; app->window_index is still the window being classified. */
void tag_model_trace(uint8_t layer, uint16_t step, const void *values, uint8_t width,
                     uint16_t count)
{
    app_t *app = fault_app;
    tag_trace_crc_t m;
    uint8_t body[TAG_TRACE_CRC_BODY_MAX];
    uint32_t crc = APP_CRC32_INIT;
    if (app == NULL) {
        return;
    }
    for (uint16_t i = 0u; i < count; i++) {
        crc = app_crc32_i16(crc, app_trace_value(values, width, i));
    }
    m.window_index = app->window_index;
    m.layer = layer;
    m.step = step;
    m.count = count;
    m.crc32 = crc ^ APP_CRC32_INIT;
    app_send(app, TAG_MSG_TRACE_CRC, body, tag_trace_crc_pack(&m, body));
    if (app->trace.dump && layer == app->trace.layer && step == app->trace.step) {
        app_send_tensor(app, layer, step, values, width, count);
    }
}

/* TRACE_REQUEST: kept until the next one (RESET leaves it); returns -1 if malformed. */
static int app_on_trace_request(app_t *app, const uint8_t *body, size_t len)
{
    tag_trace_request_t request;
    if (tag_trace_request_unpack(body, len, &request) != 0
        || (request.mode != TAG_TRACE_REQUEST_CRC_ONLY && request.mode != TAG_TRACE_REQUEST_DUMP)) {
        return -1;
    }
    app->trace.dump = request.mode == TAG_TRACE_REQUEST_DUMP;
    app->trace.layer = request.layer;
    app->trace.step = request.step;
    app_send_credit(app);
    return 0;
}
#endif

/* ---- the stream ------------------------------------------------------------------------- */

static void app_reset_stream(app_t *app)
{
    memset(app->ring, 0, sizeof app->ring);
    app->ring_head = 0u;
    app->until_window = TAG_MODEL_WINDOW;
    app->window_index = 0u;
    app->consumed = 0u;
    app->limit = APP_RX_CAPACITY;
}

/* Unroll the ring (full: ring_head is the oldest sample), classify, send RESULT. */
static void app_infer(app_t *app)
{
    tag_result_t m;
    uint8_t body[TAG_RESULT_BODY_MAX];
    uint32_t i;
    for (i = 0u; i < TAG_MODEL_WINDOW; i++) {
        uint32_t k = (app->ring_head + i) % TAG_MODEL_WINDOW;
        memcpy(app->window[i], app->ring[k], sizeof app->window[i]);
    }

    tag_counter_sync();
    uint32_t irq = tag_irq_mask(); /* no interrupt handler's instructions in the measurement */
    tag_count_t start = tag_counter_now();
    int class_index = tag_model_run(&app->model, &app->window[0][0]);
    tag_count_t elapsed = tag_counter_elapsed(start);
    tag_irq_restore(irq);

    const tag_logit_t *logits = tag_model_logits(&app->model);
    m.window_index = app->window_index;
    m.class_index = (uint8_t)class_index;
    m.latency = elapsed > (tag_count_t)UINT32_MAX ? UINT32_MAX : (uint32_t)elapsed;
    m.logits_count = (uint8_t)TAG_MODEL_CLASSES;
    for (i = 0u; i < (uint32_t)TAG_MODEL_CLASSES; i++) {
        m.logits[i] = logit_word(logits[i]);
    }
    app->window_index++;
    app->stats.windows++;
    app_send(app, TAG_MSG_RESULT, body, tag_result_pack(&m, body));
}

/* One sample into the ring; at an inference point, classify and send RESULT. Returns 1 then. */
static int app_take_sample(app_t *app, const int16_t *xyz)
{
    memcpy(app->ring[app->ring_head], xyz, sizeof app->ring[0]);
    app->ring_head = (app->ring_head + 1u) % TAG_MODEL_WINDOW;
    app->consumed++;
    app->stats.samples++;
    if (--app->until_window != 0u) {
        return 0;
    }
    app->until_window = (uint32_t)(TAG_HOP);
    app->limit = (uint16_t)(app->consumed + (uint16_t)TAG_HOP);
    app_infer(app);
    return 1;
}

/* A streamed sample: after an inference the host gets its next limit. */
static void app_push_sample(app_t *app, const int16_t *xyz)
{
    if (app_take_sample(app, xyz)) {
        app_send_credit(app);
    }
}

/* ---- bulk replay ------------------------------------------------------------------------ */

/* 0 if the region holds a well-formed image, else the REPLAY BAD_* constant saying why. Every
 * size in 64 bits: a corrupt header cannot wrap the bounds check. */
static uint32_t app_check_replay(const uint8_t *base, uint32_t bytes)
{
    if (bytes == 0u) {
        return TAG_REPLAY_BAD_NO_REGION;
    }
    if (bytes < TAG_REPLAY_HEADER_BYTES) {
        return TAG_REPLAY_BAD_SIZE;
    }
    if (tag_get_u32(base) != TAG_REPLAY_MAGIC) {
        return TAG_REPLAY_BAD_MAGIC;
    }
    if (tag_get_u16(base + 4) != TAG_REPLAY_IMAGE_VERSION) {
        return TAG_REPLAY_BAD_VERSION;
    }
    if (tag_get_u16(base + 6) != TAG_REPLAY_AXES) {
        return TAG_REPLAY_BAD_AXES;
    }
    uint32_t segments = tag_get_u32(base + 8);
    uint32_t samples = tag_get_u32(base + 12);
    uint64_t need = (uint64_t)TAG_REPLAY_HEADER_BYTES + 4u * (uint64_t)segments
                    + 2u * TAG_REPLAY_AXES * (uint64_t)samples;
    if (need > bytes) {
        return TAG_REPLAY_BAD_SIZE;
    }
    uint64_t sum = 0u;
    for (uint32_t s = 0u; s < segments; s++) {
        sum += tag_get_u32(base + TAG_REPLAY_HEADER_BYTES + 4u * s);
    }
    return sum == samples ? 0u : TAG_REPLAY_BAD_SEGMENTS;
}

static void app_send_replay_done(app_t *app, uint32_t windows, uint32_t samples)
{
    tag_replay_done_t m;
    uint8_t body[TAG_REPLAY_DONE_BODY_MAX];
    m.windows = windows;
    m.samples = samples;
    app_send(app, TAG_MSG_REPLAY_DONE, body, tag_replay_done_pack(&m, body));
}

/* REPLAY (accepted): every segment through the streaming path's ring and inference. */
static void app_replay(app_t *app)
{
    const uint8_t *base;
    uint32_t bytes = tag_replay_region(&base);
    uint32_t bad = app_check_replay(base, bytes);
    if (bad != 0u) {
        app_send_error(app, TAG_ERR_BAD_REPLAY, bad, 0u);
        return;
    }
    app_send_credit(app); /* taken: the host must not send it again while the device computes */
    uint32_t segments = tag_get_u32(base + 8);
    uint32_t samples = tag_get_u32(base + 12);
    const uint8_t *table = base + TAG_REPLAY_HEADER_BYTES;
    const uint8_t *counts = table + 4u * segments;
    uint32_t next_window = 0u;
    uint32_t windows = 0u;
    for (uint32_t s = 0u; s < segments; s++) {
        uint32_t n = tag_get_u32(table + 4u * s);
        app_reset_stream(app); /* a segment is a bout: no window spans two */
        app->window_index = next_window;
        for (uint32_t i = 0u; i < n; i++) {
            int16_t xyz[TAG_MODEL_AXES];
            for (uint32_t a = 0u; a < TAG_MODEL_AXES; a++) {
                xyz[a] = tag_get_i16(counts + 2u * a);
            }
            counts += 2u * TAG_MODEL_AXES;
            windows += (uint32_t)app_take_sample(app, xyz);
        }
        next_window = app->window_index;
    }
    app_reset_stream(app);
    app_send_replay_done(app, windows, samples);
}

#ifdef TAG_TEST_HOOKS
static void app_test_hooks(const tag_samples_t *s)
{
    if (s->samples_count >= TAG_SAMPLES_AXES && s->samples[0] == TAG_TEST_FAULT_X
        && s->samples[1] == TAG_TEST_FAULT_Y && s->samples[2] == TAG_TEST_FAULT_Z) {
        (void)*(volatile uint32_t *)(uintptr_t)TAG_TEST_FAULT_ADDRESS;
    }
}
#endif

/* A SAMPLES frame with the expected seq: within the credit, or dropped whole. */
static void app_on_samples(app_t *app, uint8_t seq)
{
    tag_samples_t *s = &app->samples;
    if (tag_samples_unpack(tag_rx_body(&app->rx), tag_rx_body_len(&app->rx), s) != 0) {
        app->expected_seq = (uint8_t)(seq + 1u);
        app->ack_seq = seq;
        app_send_error(app, TAG_ERR_BAD_MESSAGE, TAG_MSG_SAMPLES, 0u);
        return;
    }
    uint16_t count = (uint16_t)(s->samples_count / TAG_SAMPLES_AXES);
    uint16_t room = (uint16_t)(app->limit - app->consumed);
    if (count > room) {
        /* Not accepted: the host resends it from expected_seq once it has the credit. */
        app->stats.overruns++;
        app->in_gap = 1u;
        app_send_error(app, TAG_ERR_OVERFLOW, count, 0u);
        return;
    }
    app->expected_seq = (uint8_t)(seq + 1u);
    app->ack_seq = seq;
#ifdef TAG_TEST_HOOKS
    app_test_hooks(s);
#endif
    for (uint16_t i = 0u; i < count; i++) {
        app_push_sample(app, &s->samples[i * TAG_SAMPLES_AXES]);
    }
}

/* A new host (HELLO_REQUEST): the link as at boot, the stream as after RESET, then HELLO. */
static void app_reconnect(app_t *app)
{
    app->tx_seq = 0u;
    app->expected_seq = 0u;
    app->ack_seq = 0u;
    app->in_gap = 0u;
    memset(&app->stats, 0, sizeof app->stats);
    app_reset_stream(app);
    app_send_hello(app);
}

/* A frame with a good CRC. */
static void app_on_frame(app_t *app)
{
    uint8_t type = tag_rx_type(&app->rx);
    uint8_t seq = tag_rx_seq(&app->rx);
    const uint8_t *body = tag_rx_body(&app->rx);
    size_t len = tag_rx_body_len(&app->rx);

    if (type == TAG_MSG_HELLO_REQUEST) {
        /* Before the seq check: the new host cannot know where the last one left off. */
        tag_hello_request_t request;
        if (tag_hello_request_unpack(body, len, &request) == 0) {
            app_reconnect(app);
            return;
        }
    }
    if (seq != app->expected_seq) {
        if (!app->in_gap) {
            app->in_gap = 1u;
            app_send_error(app, TAG_ERR_BAD_SEQUENCE, seq, 0u);
        }
        return;
    }
    app->in_gap = 0u;
    if (type == TAG_MSG_SAMPLES) {
        app_on_samples(app, seq);
        return;
    }

    app->expected_seq = (uint8_t)(seq + 1u);
    app->ack_seq = seq;
    switch (type) {
    case TAG_MSG_PING: {
        tag_ping_t ping;
        if (tag_ping_unpack(body, len, &ping) != 0) {
            break;
        }
        app_send_pong(app, ping.token);
        app_send_credit(app);
        return;
    }
    case TAG_MSG_STATS_REQUEST: {
        tag_stats_request_t request;
        if (tag_stats_request_unpack(body, len, &request) != 0) {
            break;
        }
        app_send_stats(app);
        return;
    }
    case TAG_MSG_RESET: {
        tag_reset_t reset;
        if (tag_reset_unpack(body, len, &reset) != 0) {
            break;
        }
        app_reset_stream(app);
        app_send_credit(app);
        return;
    }
    case TAG_MSG_REPLAY: {
        tag_replay_t replay;
        if (tag_replay_unpack(body, len, &replay) != 0) {
            break;
        }
        app_replay(app);
        return;
    }
#ifdef TAG_MODEL_TRACE
    case TAG_MSG_TRACE_REQUEST:
        if (app_on_trace_request(app, body, len) != 0) {
            break;
        }
        return;
#endif
    default:
        break;
    }
    app_send_error(app, TAG_ERR_BAD_MESSAGE, type, 0u);
}

/* ---- faults ----------------------------------------------------------------------------- */

void tag_fault_report(uint32_t pc, uint32_t cfsr)
{
    /* Handler mode, whatever stack is left: a small local frame, nothing else. */
    uint8_t body[TAG_ERROR_BODY_MAX];
    uint8_t frame[TAG_ERROR_BODY_MAX + 8u];
    tag_error_t m;
    uint8_t seq = 0u;
    m.code = TAG_ERR_HARD_FAULT;
    m.expected_seq = 0u;
    if (fault_app != NULL) {
        seq = fault_app->tx_seq++;
        m.expected_seq = fault_app->expected_seq;
    }
    m.detail = cfsr;
    m.pc = pc;
    size_t n = tag_frame_write(TAG_MSG_ERROR, seq, body, tag_error_pack(&m, body), frame,
                               sizeof frame);
    if (n > 0u) {
        tag_uart_write(frame, (uint32_t)n);
    }
}

/* ---- main ------------------------------------------------------------------------------- */

int main(void)
{
    static app_t app;

    /* The boot state, also when main runs again (the fuzz harness runs it once per input). */
    memset(&app, 0, sizeof app);
    tag_uart_init();
    tag_counter_start();
    tag_rx_init(&app.rx);
    tag_model_init(&app.model);
    app_reset_stream(&app);
    fault_app = &app;

    tag_uart_putc(0x00u); /* flush: a torn frame from before cannot merge with HELLO */
    app_send_hello(&app);
    tag_count_t announced = tag_counter_now();

    for (;;) {
        int c = tag_uart_getc();
        if (c < 0) {
            if (!app.host_heard && tag_counter_elapsed(announced) >= APP_HELLO_PERIOD) {
                app_send_hello(&app);
                announced = tag_counter_now();
            }
            continue;
        }
        switch (tag_rx_push(&app.rx, (uint8_t)c)) {
        case TAG_RX_FRAME:
            app.host_heard = 1u;
            app_on_frame(&app);
            break;
        case TAG_RX_BAD_FRAME:
            app.host_heard = 1u;
            app.stats.bad_frames++;
            app.in_gap = 1u;
            app_send_error(&app, TAG_ERR_BAD_FRAME, 0u, 0u);
            break;
        default:
            break;
        }
    }
}
