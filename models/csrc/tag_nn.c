#include "tag_nn.h"

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

#define TAG_ROWS_PER_PASS 4

#if TAG_NN_DSP && TAG_NN_WORD_BITS == 16
/* Cortex-M4, int16: SMLAD adds two 16x16 products; four rows share each load of x.
 * Inner loop: 5 loads + 4 SMLAD + 3 for the loop = 12 instructions for 8 MACs. */
static inline void tag_rows(const tag_q_t *w, const tag_q_t *x, int cols, int32_t *acc)
{
    const tag_q_t *w0 = w, *w1 = w + cols, *w2 = w + 2 * cols, *w3 = w + 3 * cols;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    int c = 0;
    for (; c + 2 <= cols; c += 2) {
        const int32_t x2 = tag_load_word(x + c);
        a0 = __smlad(tag_load_word(w0 + c), x2, a0);
        a1 = __smlad(tag_load_word(w1 + c), x2, a1);
        a2 = __smlad(tag_load_word(w2 + c), x2, a2);
        a3 = __smlad(tag_load_word(w3 + c), x2, a3);
    }
    if (c < cols) { /* an odd column */
        a0 += (int32_t)w0[c] * x[c];
        a1 += (int32_t)w1[c] * x[c];
        a2 += (int32_t)w2[c] * x[c];
        a3 += (int32_t)w3[c] * x[c];
    }
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}
#elif TAG_NN_DSP && TAG_NN_WORD_BITS == 8
/* The int16 pass's shape, kept apart as CMSIS-NN keeps its _s16 and _s8 kernels: one helper for
 * both passes' leftover columns cost 1.4 M instructions per inference (measured in QEMU).
 * Cortex-M4, int8: a word of four weights is widened to two halfword pairs by SXTB16 (bytes
 * 0 and 2, then 1 and 3 after a rotate), each pair taken by one SMLAD; four rows share x.
 * Inner loop: 5 loads + 2 widenings of x + 4 per row (2 SXTB16, 2 SMLAD) + 3 for the loop
 * = 26 instructions for 16 MACs. */
static inline uint32_t tag_ror8(uint32_t word)
{
    return (word >> 8) | (word << 24); /* GCC folds it into SXTB16's rotate */
}

static inline int32_t tag_mac4(int32_t w4, int32_t x02, int32_t x13, int32_t acc)
{
    acc = __smlad(__sxtb16(w4), x02, acc);
    return __smlad(__sxtb16(tag_ror8(w4)), x13, acc);
}

static inline void tag_rows(const tag_q_t *w, const tag_q_t *x, int cols, int32_t *acc)
{
    const tag_q_t *w0 = w, *w1 = w + cols, *w2 = w + 2 * cols, *w3 = w + 3 * cols;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    int c = 0;
    for (; c + 4 <= cols; c += 4) {
        const int32_t x4 = tag_load_word(x + c);
        const int32_t x02 = __sxtb16(x4), x13 = __sxtb16(tag_ror8(x4));
        a0 = tag_mac4(tag_load_word(w0 + c), x02, x13, a0);
        a1 = tag_mac4(tag_load_word(w1 + c), x02, x13, a1);
        a2 = tag_mac4(tag_load_word(w2 + c), x02, x13, a2);
        a3 = tag_mac4(tag_load_word(w3 + c), x02, x13, a3);
    }
    for (; c < cols; ++c) { /* up to three columns */
        a0 += (int32_t)w0[c] * x[c];
        a1 += (int32_t)w1[c] * x[c];
        a2 += (int32_t)w2[c] * x[c];
        a3 += (int32_t)w3[c] * x[c];
    }
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}
#else
/* Plain C (the M3 and the host): four rows share each load of x; on the M3 each MAC is one
 * LDRSH of a weight and one MLA. */
static inline void tag_rows(const tag_q_t *w, const tag_q_t *x, int cols, int32_t *acc)
{
    const tag_q_t *w0 = w, *w1 = w + cols, *w2 = w + 2 * cols, *w3 = w + 3 * cols;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (int c = 0; c < cols; ++c) {
        const int32_t xc = x[c];
        a0 += w0[c] * xc;
        a1 += w1[c] * xc;
        a2 += w2[c] * xc;
        a3 += w3[c] * xc;
    }
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}
#endif

void tag_matvec(const tag_q_t *w, const tag_q_t *x, int rows, int cols, int32_t *acc)
{
    int r = 0;
    for (; r + TAG_ROWS_PER_PASS <= rows; r += TAG_ROWS_PER_PASS) {
        tag_rows(w + r * cols, x, cols, acc + r);
    }
    for (; r < rows; ++r) {
        acc[r] = tag_dot(w + r * cols, x, cols);
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
