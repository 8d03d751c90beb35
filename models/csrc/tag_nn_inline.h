/*
 * The point-wise kernels, static inline: compiled in the translation unit of the generated
 * tag_model.c, whose layer structs are static const, they see every Q format as a constant, so
 * the compiler folds the shifts and drops the branches between them (the model's Q formats at
 * compile time, with no generated kernel code). Included by tag_nn.h; not on its own.
 */
#ifndef TAG_NN_INLINE_H
#define TAG_NN_INLINE_H

#include <stdint.h>
#include <string.h>

#include "tag_nn_tables.h"

/* The DSP-extension paths, unless TAG_NN_PLAIN_C asks for the plain C reference kernels on any
 * core (benchmarks/kernels.py measures one against the other). */
#if defined(__ARM_FEATURE_DSP) && !defined(TAG_NN_PLAIN_C)
#define TAG_NN_DSP 1
#else
#define TAG_NN_DSP 0
#endif
#if defined(__ARM_FEATURE_SAT) || TAG_NN_DSP
#include <arm_acle.h>
#endif

#if TAG_NN_DSP
/* A word of 2 (int16) or 4 (int8) values: one (unaligned) LDR on the M4; memcpy keeps
 * the C strict about aliasing and alignment. */
static inline int32_t tag_load_word(const tag_q_t *p)
{
    int32_t word;
    memcpy(&word, p, sizeof word);
    return word;
}
#endif

/* One row of a dense layer's weights (row-major: the dense layers are small, the GRU is not). */
static inline int32_t tag_dot(const tag_q_t *w, const tag_q_t *x, int n)
{
    int32_t acc = 0;
    int j = 0;
#if TAG_NN_DSP && TAG_NN_WORD_BITS == 16
    for (; j + 2 <= n; j += 2) {
        acc = __smlad(tag_load_word(w + j), tag_load_word(x + j), acc);
    }
#endif
    for (; j < n; ++j) {
        acc += (int32_t)w[j] * x[j];
    }
    return acc;
}


static inline int32_t tag_sat(int64_t value, int bits)
{
    const int64_t max = ((int64_t)1 << (bits - 1)) - 1;
    const int64_t min = -max - 1;
    return (int32_t)(value > max ? max : (value < min ? min : value));
}

/* tag_sat of a value already in int32: the same result in 32-bit arithmetic. */
static inline int32_t tag_sat32(int32_t value, int bits)
{
    const int32_t max = (int32_t)((1u << (bits - 1)) - 1u);
    const int32_t min = -max - 1;
    return value > max ? max : (value < min ? min : value);
}

/* tag_sat32 to 16 bits and to the word: one SSAT where the core has it (the M3 and the M4),
 * which GCC does not make of the comparisons itself. */
#if defined(__ARM_FEATURE_SAT) && !defined(TAG_NN_PLAIN_C)
#define tag_sat16(value) __ssat((value), 16)
#define tag_sat_word(value) __ssat((value), TAG_NN_WORD_BITS)
#else
#define tag_sat16(value) tag_sat32((value), 16)
#define tag_sat_word(value) tag_sat32((value), TAG_NN_WORD_BITS)
#endif

static inline int32_t tag_align(int32_t value, int from_frac, int to_frac)
{
    const int shift = from_frac - to_frac;
    if (shift >= 32) {
        return 0; /* |value| < 2^31, at most half a step of the new format */
    }
    if (shift > 0) {
        /* Round half up in 32 bits: floor(value / 2^shift) plus the bit just below it, which is
         * exactly floor((value + 2^(shift-1)) / 2^shift) with no sum that could overflow. */
        return (value >> shift) + ((value >> (shift - 1)) & 1);
    }
    if (shift < 0) {
        const int up = -shift;
        if (up >= 31) {
            return value > 0 ? INT32_MAX : (value < 0 ? INT32_MIN : 0);
        }
        if (value > (INT32_MAX >> up)) {
            return INT32_MAX;
        }
        if (value < (INT32_MIN >> up)) {
            return INT32_MIN;
        }
        return (int32_t)((uint32_t)value << up);
    }
    return value;
}

/* A 16-bit pre-activation (tag_pre_sum's) in Q(.frac) in the tables' input format, saturated
 * to 16 bits: what tag_sat16(tag_align(...)) gives, without tag_align's int32 checks, which a
 * 16-bit value never needs (narrowing keeps it inside 16 bits, and a shift left by less than 16
 * places stays inside int32), nor, when narrowing, the saturation. */
static inline int32_t tag_lut_input(int32_t pre16, int frac)
{
    const int up = TAG_LUT_INPUT_FRAC - frac;
    if (up <= 0) {
        return tag_align(pre16, frac, TAG_LUT_INPUT_FRAC);
    }
    if (up < 16) {
        return tag_sat16((int32_t)((uint32_t)pre16 << up));
    }
    return tag_sat16(tag_align(pre16, frac, TAG_LUT_INPUT_FRAC));
}

/* Linear interpolation over the 16-bit input range in a table of 256 words, each an entry in
 * its low half and the step to the next entry in its high half (models/export.py, lut_steps):
 * word (u >> TAG_LUT_INDEX_SHIFT) of u = input + 32768. */
static inline int16_t tag_lookup(const int32_t *table, int32_t pre16, int frac)
{
    const int32_t input = tag_lut_input(pre16, frac);
    const int32_t word = table[(32768 >> TAG_LUT_INDEX_SHIFT) + (input >> TAG_LUT_INDEX_SHIFT)];
    const int32_t within = input & ((1 << TAG_LUT_INDEX_SHIFT) - 1);
    const int32_t entry = (int16_t)word, step = word >> 16;
    return (int16_t)(entry + tag_align(step * within, TAG_LUT_INDEX_SHIFT, 0));
}

static inline int16_t tag_sigmoid_q15(int32_t pre16, int frac)
{
    return tag_lookup(tag_sigmoid_lut, pre16, frac);
}

static inline int16_t tag_tanh_q15(int32_t pre16, int frac)
{
    return tag_lookup(tag_tanh_lut, pre16, frac);
}

/* A pre-activation: the sum of its aligned terms saturated to 16 bits; in 32-bit arithmetic
 * when the exporter proved the sum cannot leave int32 (a constant where the layer is const). */
static inline int32_t tag_pre_sum(int fits_int32, int32_t a, int32_t b, int32_t c)
{
    return fits_int32 ? tag_sat16(a + b + c) : tag_sat((int64_t)a + b + c, 16);
}

static inline void tag_input(const int16_t *counts, int n, int in_frac, int out_frac, tag_q_t *out)
{
    for (int i = 0; i < n; ++i) {
        out[i] = (tag_q_t)tag_sat_word(tag_align(counts[i], in_frac, out_frac));
    }
}

static inline void tag_dense(const tag_dense_t *layer, const tag_q_t *in, tag_q_t *out)
{
    const int acc_frac = layer->w_frac + layer->in_frac;
    for (int i = 0; i < layer->out_dim; ++i) {
        const int32_t acc = layer->bias[i] + tag_dot(layer->weights + i * layer->in_dim, in,
                                           layer->in_dim);
        int32_t y = tag_sat_word(tag_align(acc, acc_frac, layer->out_frac));
        if (layer->relu && y < 0) {
            y = 0;
        }
        out[i] = (tag_q_t)y;
    }
}

static inline tag_status_t tag_gru_step(const tag_gru_t *gru, const tag_q_t *x,
                                        const tag_q_t *h, tag_q_t *h_next,
                                        tag_gru_scratch_t *scratch)
{
    const int8_t *pre = gru->pre_frac;
    const int hidden = gru->hidden;
    /* Every gate's products in two runs over the stacked weights. */
    if (tag_matvec(&gru->w_ih, x, scratch->ax) != TAG_OK
        || tag_matvec(&gru->w_hh, h, scratch->ah) != TAG_OK) {
        return TAG_ARG_ERROR;
    }
    int x_frac[TAG_GATES], h_frac[TAG_GATES];
    for (int g = 0; g < TAG_GATES; ++g) {
        x_frac[g] = gru->w_ih_frac[g] + gru->in_frac;
        h_frac[g] = gru->w_hh_frac[g] + gru->h_frac;
    }
    for (int i = 0; i < hidden; ++i) {
        int32_t ax[TAG_GATES], ah[TAG_GATES];
        for (int g = 0; g < TAG_GATES; ++g) {
            ax[g] = scratch->ax[g * hidden + i];
            ah[g] = scratch->ah[g * hidden + i];
        }
        /* Pre-activations: each product aligned on its own, summed with the (pre-aligned)
         * bias, saturated to 16 bits. */
        const int fits = gru->sums_fit_int32;
        const int32_t *bias = gru->bias + i;
        const int32_t pre_r = tag_pre_sum(fits, tag_align(ax[TAG_GATE_R], x_frac[TAG_GATE_R], pre[TAG_PRE_R]),
                                          tag_align(ah[TAG_GATE_R], h_frac[TAG_GATE_R], pre[TAG_PRE_R]),
                                          bias[TAG_BIAS_R * hidden]);
        const int32_t pre_z = tag_pre_sum(fits, tag_align(ax[TAG_GATE_Z], x_frac[TAG_GATE_Z], pre[TAG_PRE_Z]),
                                          tag_align(ah[TAG_GATE_Z], h_frac[TAG_GATE_Z], pre[TAG_PRE_Z]),
                                          bias[TAG_BIAS_Z * hidden]);
        const int32_t pre_in = tag_pre_sum(fits, tag_align(ax[TAG_GATE_N], x_frac[TAG_GATE_N], pre[TAG_PRE_IN]),
                                           bias[TAG_BIAS_IN * hidden], 0);
        const int32_t pre_hn = tag_pre_sum(fits, tag_align(ah[TAG_GATE_N], h_frac[TAG_GATE_N], pre[TAG_PRE_HN]),
                                           bias[TAG_BIAS_HN * hidden], 0);
        const int32_t r = tag_sigmoid_q15(pre_r, pre[TAG_PRE_R]);
        const int32_t z = tag_sigmoid_q15(pre_z, pre[TAG_PRE_Z]);
        /* n = tanh(in + r * hn) */
        const int32_t pre_n = tag_pre_sum(fits, tag_align(pre_in, pre[TAG_PRE_IN], pre[TAG_PRE_N]),
                                          tag_align(r * pre_hn, TAG_GATE_FRAC + pre[TAG_PRE_HN], pre[TAG_PRE_N]), 0);
        const int32_t n = tag_tanh_q15(pre_n, pre[TAG_PRE_N]);
        /* h' = (1 - z) n + z h = n + z (h - n), in Q15 */
        const int32_t h15 = tag_align(h[i], gru->h_frac, TAG_GATE_FRAC);
        const int32_t next15 = n + tag_align(z * (h15 - n), TAG_GATE_FRAC, 0);
        h_next[i] = (tag_q_t)tag_sat_word(tag_align(next15, TAG_GATE_FRAC, gru->h_frac));
    }
    return TAG_OK;
}

#endif /* TAG_NN_INLINE_H */
