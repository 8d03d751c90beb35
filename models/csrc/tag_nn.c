#include "tag_nn.h"

#include <string.h>

#include "tag_nn_tables.h"

#if defined(__ARM_FEATURE_DSP) && TAG_NN_WORD_BITS == 16
#include <arm_acle.h>
#endif

int32_t tag_sat(int64_t value, int bits)
{
    const int64_t max = ((int64_t)1 << (bits - 1)) - 1;
    const int64_t min = -max - 1;
    return (int32_t)(value > max ? max : (value < min ? min : value));
}

int32_t tag_align(int32_t value, int from_frac, int to_frac)
{
    const int shift = from_frac - to_frac;
    if (shift > 0) {
        return (int32_t)(((int64_t)value + ((int64_t)1 << (shift - 1))) >> shift);
    }
    if (shift < 0) {
        return tag_sat((int64_t)value * ((int64_t)1 << -shift), 32);
    }
    return value;
}

static int16_t tag_lookup(const int16_t *table, int32_t value, int frac)
{
    const int32_t u = tag_sat(tag_align(value, frac, TAG_LUT_INPUT_FRAC), 16) + 32768;
    const int32_t index = u >> TAG_LUT_INDEX_SHIFT;
    const int32_t within = u & ((1 << TAG_LUT_INDEX_SHIFT) - 1);
    const int32_t low = table[index];
    return (int16_t)(low + tag_align((table[index + 1] - low) * within, TAG_LUT_INDEX_SHIFT, 0));
}

int16_t tag_sigmoid_q15(int32_t value, int frac)
{
    return tag_lookup(tag_sigmoid_lut, value, frac);
}

int16_t tag_tanh_q15(int32_t value, int frac)
{
    return tag_lookup(tag_tanh_lut, value, frac);
}

void tag_input(const int16_t *counts, int n, int in_frac, int out_frac, tag_q_t *out)
{
    for (int i = 0; i < n; ++i) {
        out[i] = (tag_q_t)tag_sat(tag_align(counts[i], in_frac, out_frac), TAG_NN_WORD_BITS);
    }
}

void tag_avgpool(const int16_t *counts, int length, int axes, int pool_shift, int16_t *out)
{
    const int pool = 1 << pool_shift;
    for (int block = 0; block < (length >> pool_shift); ++block) {
        for (int axis = 0; axis < axes; ++axis) {
            int32_t sum = 0;
            for (int t = 0; t < pool; ++t) {
                sum += counts[(block * pool + t) * axes + axis];
            }
            out[block * axes + axis] = (int16_t)tag_align(sum, pool_shift, 0);
        }
    }
}

/* Exact: the exporter guarantees the sum cannot leave int32, so any order of additions gives
 * the same result, and so does SMLAD's wrapping 32-bit accumulate. */
#if defined(__ARM_FEATURE_DSP) && TAG_NN_WORD_BITS == 16
/* Cortex-M4: two 16x16 products per SMLAD (DESIGN.md: 2.7 instead of 5.2 instructions a MAC). */
static int32_t tag_dot(const tag_q_t *w, const tag_q_t *x, int n, int32_t acc)
{
    int j = 0;
    for (; j + 2 <= n; j += 2) {
        int32_t w2, x2;
        memcpy(&w2, w + j, sizeof w2); /* a single (unaligned) word load on the M4 */
        memcpy(&x2, x + j, sizeof x2);
        acc = __smlad(w2, x2, acc);
    }
    if (j < n) {
        acc += (int32_t)w[j] * x[j];
    }
    return acc;
}
#else
static int32_t tag_dot(const tag_q_t *w, const tag_q_t *x, int n, int32_t acc)
{
    for (int j = 0; j < n; ++j) {
        acc += (int32_t)w[j] * x[j];
    }
    return acc;
}
#endif

void tag_dense(const tag_dense_t *layer, const tag_q_t *in, tag_q_t *out)
{
    const int acc_frac = layer->w_frac + layer->in_frac;
    for (int i = 0; i < layer->out_dim; ++i) {
        const int32_t bias = tag_align(layer->bias[i], layer->b_frac, acc_frac);
        const int32_t acc = tag_dot(layer->weights + i * layer->in_dim, in, layer->in_dim, bias);
        int32_t y = tag_sat(tag_align(acc, acc_frac, layer->out_frac), TAG_NN_WORD_BITS);
        if (layer->relu && y < 0) {
            y = 0;
        }
        out[i] = (tag_q_t)y;
    }
}

void tag_gru_step(const tag_gru_t *gru, const tag_q_t *x, const tag_q_t *h, tag_q_t *h_next)
{
    const int8_t *pre = gru->pre_frac;
    for (int i = 0; i < gru->hidden; ++i) {
        int32_t ax[TAG_GATES], ah[TAG_GATES];
        int x_frac[TAG_GATES], h_frac[TAG_GATES];
        for (int g = 0; g < TAG_GATES; ++g) {
            ax[g] = tag_dot(gru->w_ih[g] + i * gru->in_dim, x, gru->in_dim, 0);
            ah[g] = tag_dot(gru->w_hh[g] + i * gru->hidden, h, gru->hidden, 0);
            x_frac[g] = gru->w_ih_frac[g] + gru->in_frac;
            h_frac[g] = gru->w_hh_frac[g] + gru->h_frac;
        }
        /* Pre-activations: each term aligned on its own, summed wide, saturated to 16 bits. */
        const int32_t pre_r = tag_sat((int64_t)tag_align(ax[TAG_GATE_R], x_frac[TAG_GATE_R], pre[TAG_PRE_R])
                                      + tag_align(ah[TAG_GATE_R], h_frac[TAG_GATE_R], pre[TAG_PRE_R])
                                      + tag_align(gru->bias[TAG_BIAS_R][i], gru->b_frac[TAG_BIAS_R], pre[TAG_PRE_R]), 16);
        const int32_t pre_z = tag_sat((int64_t)tag_align(ax[TAG_GATE_Z], x_frac[TAG_GATE_Z], pre[TAG_PRE_Z])
                                      + tag_align(ah[TAG_GATE_Z], h_frac[TAG_GATE_Z], pre[TAG_PRE_Z])
                                      + tag_align(gru->bias[TAG_BIAS_Z][i], gru->b_frac[TAG_BIAS_Z], pre[TAG_PRE_Z]), 16);
        const int32_t pre_in = tag_sat((int64_t)tag_align(ax[TAG_GATE_N], x_frac[TAG_GATE_N], pre[TAG_PRE_IN])
                                       + tag_align(gru->bias[TAG_BIAS_IN][i], gru->b_frac[TAG_BIAS_IN], pre[TAG_PRE_IN]), 16);
        const int32_t pre_hn = tag_sat((int64_t)tag_align(ah[TAG_GATE_N], h_frac[TAG_GATE_N], pre[TAG_PRE_HN])
                                       + tag_align(gru->bias[TAG_BIAS_HN][i], gru->b_frac[TAG_BIAS_HN], pre[TAG_PRE_HN]), 16);
        const int32_t r = tag_sigmoid_q15(pre_r, pre[TAG_PRE_R]);
        const int32_t z = tag_sigmoid_q15(pre_z, pre[TAG_PRE_Z]);
        /* n = tanh(in + r * hn) */
        const int32_t pre_n = tag_sat((int64_t)tag_align(pre_in, pre[TAG_PRE_IN], pre[TAG_PRE_N])
                                      + tag_align(r * pre_hn, TAG_GATE_FRAC + pre[TAG_PRE_HN], pre[TAG_PRE_N]), 16);
        const int32_t n = tag_tanh_q15(pre_n, pre[TAG_PRE_N]);
        /* h' = (1 - z) n + z h = n + z (h - n), in Q15 */
        const int32_t h15 = tag_align(h[i], gru->h_frac, TAG_GATE_FRAC);
        const int32_t next15 = n + tag_align(z * (h15 - n), TAG_GATE_FRAC, 0);
        h_next[i] = (tag_q_t)tag_sat(tag_align(next15, TAG_GATE_FRAC, gru->h_frac), TAG_NN_WORD_BITS);
    }
}

int tag_argmax(const tag_q_t *values, int n)
{
    int best = 0;
    for (int i = 1; i < n; ++i) {
        if (values[i] > values[best]) {
            best = i;
        }
    }
    return best;
}
