/*
 * Fixed-point kernels of the tag models: plain C99, one function per operation, no allocation,
 * no globals but const tables. The word length of weights and activations (8 or 16 bits) is fixed
 * for the whole model by tag_nn_config.h, which the exporter writes.
 *
 * Every function has a bit-exact numpy twin (models/fixedpoint.py, models/quantize.py).
 * Q formats: a value v is held as round(v * 2^frac). Products accumulate in int32; the exporter
 * chooses weight formats so that no input can overflow an accumulator.
 * Requires an arithmetic right shift of negative integers and a conversion to a narrower signed
 * type that wraps (GCC on Arm and x86).
 */
#ifndef TAG_NN_H
#define TAG_NN_H

#include <stdint.h>

#include "tag_nn_config.h"

#if TAG_NN_WORD_BITS == 16
typedef int16_t tag_q_t;
#elif TAG_NN_WORD_BITS == 8
typedef int8_t tag_q_t;
#else
#error "TAG_NN_WORD_BITS must be 8 or 16"
#endif

/* What tag_matvec reads a word pair at a time (LDRD), weights and activations, is declared
 * with this. */
#define TAG_NN_ALIGNED __attribute__((aligned(8)))

typedef enum { TAG_OK = 0, TAG_ARG_ERROR = -1 } tag_status_t;

/* A build holds one word length (tag_nn_config.h); in the object code its mat-vec carries the
 * data type's name, as CMSIS-NN's kernels do: tag_matvec is tag_matvec_s16 or tag_matvec_s8
 * (tag_matvec_f32, in tag_nn_f32.h, is the float32 one). */
#if TAG_NN_WORD_BITS == 16
#define tag_matvec tag_matvec_s16
#else
#define tag_matvec tag_matvec_s8
#endif

/* A matrix as tag_matvec reads it: rows x cols words in matvec_layout's order (models/export.py:
 * passes of TAG_MATVEC_ROWS rows, blocks of TAG_MATVEC_BLOCK columns, zero padded), word
 * aligned. */
typedef struct {
    uint16_t rows, cols;
    const tag_q_t *w;
} tag_matrix_t;

/* y = sat(align(W x + b)) and ReLU when relu != 0. */
typedef struct {
    uint16_t in_dim, out_dim;
    int8_t in_frac, w_frac, out_frac;
    uint8_t relu;
    const tag_q_t *weights; /* [out_dim][in_dim] */
    const int32_t *bias;    /* [out_dim], in the accumulator's Q(w_frac + in_frac): the exporter
                               aligns it once (IntDense.b_acc), not every call */
} tag_dense_t;

/* PyTorch's gate order; biases of r and z merged, the two halves of n kept apart. */
enum { TAG_GATE_R, TAG_GATE_Z, TAG_GATE_N, TAG_GATES };
enum { TAG_PRE_R, TAG_PRE_Z, TAG_PRE_IN, TAG_PRE_HN, TAG_PRE_N, TAG_PRES };
enum { TAG_BIAS_R, TAG_BIAS_Z, TAG_BIAS_IN, TAG_BIAS_HN, TAG_BIASES };

typedef struct {
    uint16_t in_dim, hidden;
    int8_t in_frac, h_frac;              /* h_frac = word bits - 1 */
    int8_t w_ih_frac[TAG_GATES], w_hh_frac[TAG_GATES];
    int8_t pre_frac[TAG_PRES];           /* 16-bit pre-activations */
    uint8_t sums_fit_int32;              /* the exporter's bound: no pre-activation sum leaves
                                            int32, so they are added in 32 bits */
    tag_matrix_t w_ih;                   /* TAG_GATES * hidden rows (the gates stacked) x in_dim */
    tag_matrix_t w_hh;                   /* TAG_GATES * hidden rows x hidden */
    const int32_t *bias;                 /* [TAG_BIASES][hidden], each row in the format of the
                                            pre-activation it adds to: the exporter aligns them
                                            once (IntGRU.b_pre), not every step */
} tag_gru_t;

/* What tag_gru_step computes before its point-wise part: every gate's products, input and
 * state, for all units; the caller owns it (in tag_model_t), so the kernel keeps no state. */
typedef struct {
    int32_t ax[TAG_GATES * TAG_NN_MAX_HIDDEN]; /* W_ih x, gate by gate */
    int32_t ah[TAG_GATES * TAG_NN_MAX_HIDDEN]; /* W_hh h */
} tag_gru_scratch_t;

/* Rounded mean of 2^pool_shift consecutive samples per axis: [length][axes] -> [length >> pool_shift][axes]. */
void tag_avgpool(const int16_t *counts, int length, int axes, int pool_shift, int16_t *out);
/* acc[r] = sum over c of w[r][c] x[c] in int32 for every row of m; TAG_MATVEC_ROWS rows per
 * pass over x (SMLAD on cores with the DSP extension). Exact: the exporter bounds every sum
 * inside int32, so the order of the additions does not matter. TAG_ARG_ERROR for an empty or
 * misaligned matrix or x (both must be word aligned), or more than TAG_NN_MAX_COLS columns. */
tag_status_t tag_matvec(const tag_matrix_t *m, const tag_q_t *x, int32_t *acc);
/* Index of the first largest value. */
int tag_argmax(const tag_q_t *values, int n);

/* In tag_nn_inline.h (static inline: their Q formats fold where the layers are const):
 *   int32_t tag_sat(int64_t value, int bits)      clamp to a signed word of `bits` bits
 *                                                 (tag_sat32: the same of an int32);
 *   int32_t tag_align(int32_t value, int from_frac, int to_frac)
 *       from Q(.from_frac) to Q(.to_frac): round half up when narrowing, saturate at int32 when
 *       widening;
 *   int16_t tag_sigmoid_q15(int32_t pre16, int frac), tag_tanh_q15(...)
 *       Q15 sigmoid and tanh of a 16-bit value in Q(.frac): 257-entry table, linear
 *       interpolation;
 *   void tag_input(counts, n, in_frac, out_frac, out)
 *       n wire counts in Q(.in_frac) to words in Q(.out_frac);
 *   void tag_dense(layer, in, out)  y = sat(align(W x + b)), ReLU when layer->relu;
 *   tag_status_t tag_gru_step(gru, x, h, h_next, scratch)
 *       one time step, h_next = GRU(x, h); h and h_next must not overlap; x and h word
 *       aligned (tag_matvec), else TAG_ARG_ERROR. */
#include "tag_nn_inline.h"

#endif /* TAG_NN_H */
