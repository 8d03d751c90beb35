/*
 * Fixed-point kernels of the tag models: plain C99, one function per operation, no allocation,
 * no globals but const tables. The word length of weights and activations (8 or 16 bits) is fixed
 * for the whole model by tag_nn_config.h, which the exporter writes.
 *
 * Every function has a bit-exact numpy twin (models/fixedpoint.py, models/quantize.py).
 * Q formats: a value v is held as round(v * 2^frac). Products accumulate in int32; the exporter
 * chooses weight formats so that no input can overflow an accumulator.
 * Requires an arithmetic right shift of negative integers (GCC on Arm and x86).
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

/* y = sat(align(W x + align(b))) and ReLU when relu != 0. */
typedef struct {
    uint16_t in_dim, out_dim;
    int8_t in_frac, w_frac, b_frac, out_frac;
    uint8_t relu;
    const tag_q_t *weights; /* [out_dim][in_dim] */
    const tag_q_t *bias;    /* [out_dim] */
} tag_dense_t;

/* PyTorch's gate order; biases of r and z merged, the two halves of n kept apart. */
enum { TAG_GATE_R, TAG_GATE_Z, TAG_GATE_N, TAG_GATES };
enum { TAG_PRE_R, TAG_PRE_Z, TAG_PRE_IN, TAG_PRE_HN, TAG_PRE_N, TAG_PRES };
enum { TAG_BIAS_R, TAG_BIAS_Z, TAG_BIAS_IN, TAG_BIAS_HN, TAG_BIASES };

typedef struct {
    uint16_t in_dim, hidden;
    int8_t in_frac, h_frac;              /* h_frac = word bits - 1 */
    int8_t w_ih_frac[TAG_GATES], w_hh_frac[TAG_GATES];
    int8_t b_frac[TAG_BIASES];
    int8_t pre_frac[TAG_PRES];           /* 16-bit pre-activations */
    const tag_q_t *w_ih[TAG_GATES];      /* each [hidden][in_dim] */
    const tag_q_t *w_hh[TAG_GATES];      /* each [hidden][hidden] */
    const tag_q_t *bias[TAG_BIASES];     /* each [hidden] */
} tag_gru_t;

/* Clamp to a signed word of `bits` bits. */
int32_t tag_sat(int64_t value, int bits);
/* From Q(.from_frac) to Q(.to_frac): round half up when narrowing, saturate at int32 when widening. */
int32_t tag_align(int32_t value, int from_frac, int to_frac);
/* Q15 sigmoid and tanh of a value in Q(.frac): 257-entry table, linear interpolation. */
int16_t tag_sigmoid_q15(int32_t value, int frac);
int16_t tag_tanh_q15(int32_t value, int frac);

/* n wire counts in Q(.in_frac) to words in Q(.out_frac). */
void tag_input(const int16_t *counts, int n, int in_frac, int out_frac, tag_q_t *out);
/* Rounded mean of 2^pool_shift consecutive samples per axis: [length][axes] -> [length >> pool_shift][axes]. */
void tag_avgpool(const int16_t *counts, int length, int axes, int pool_shift, int16_t *out);
void tag_dense(const tag_dense_t *layer, const tag_q_t *in, tag_q_t *out);
/* One time step: h_next = GRU(x, h). h and h_next must not overlap. */
void tag_gru_step(const tag_gru_t *gru, const tag_q_t *x, const tag_q_t *h, tag_q_t *h_next);
/* Index of the first largest value. */
int tag_argmax(const tag_q_t *values, int n);

#endif /* TAG_NN_H */
