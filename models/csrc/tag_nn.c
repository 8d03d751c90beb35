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

/* tag_matvec's weights come in the order matvec_layout (models/export.py) writes them: passes
 * of TAG_MATVEC_ROWS rows; in a pass, blocks of TAG_MATVEC_BLOCK columns (two 32-bit words: 4
 * int16 or 8 int8); in a block, the pass's rows one after the other; zeros fill the last pass
 * and block. A pass walks one pointer forward through contiguous words, and each block of x
 * meets the same columns of all the pass's rows while it is in registers. */
#if TAG_MATVEC_ROWS != 4
#error "tag_block keeps four accumulators: TAG_MATVEC_ROWS must be 4"
#endif
#define TAG_BLOCK_LENGTH (TAG_MATVEC_ROWS * TAG_MATVEC_BLOCK) /* words of a block */

#if TAG_NN_DSP && TAG_NN_WORD_BITS == 16
/* Cortex-M4, int16, one block: x's two words (4 columns) by LDRD, then per row an LDRD of its
 * two words and two SMLAD, each adding two products. Budget: 5 LDRD + 8 SMLAD = 13 instructions
 * for 16 MACs (0.81 per MAC); the pointers move by post-indexing, so the loop adds only its
 * compare and branch. GCC does not pair the loads into LDRD itself, hence the assembly. */
static inline void tag_block(const tag_q_t **w, const tag_q_t **x, int32_t acc[4])
{
    int32_t x01, x23, wa, wb;
    __asm__("ldrd  %[x01], %[x23], [%[x]], #8\n\t"       /* x[c .. c+3]               */
            "ldrd  %[wa], %[wb], [%[w]], #8\n\t"         /* row 0: w[c .. c+3]        */
            "smlad %[a0], %[wa], %[x01], %[a0]\n\t"      /* a0 += w0 x0 + w1 x1       */
            "smlad %[a0], %[wb], %[x23], %[a0]\n\t"      /* a0 += w2 x2 + w3 x3       */
            "ldrd  %[wa], %[wb], [%[w]], #8\n\t"         /* row 1                     */
            "smlad %[a1], %[wa], %[x01], %[a1]\n\t"
            "smlad %[a1], %[wb], %[x23], %[a1]\n\t"
            "ldrd  %[wa], %[wb], [%[w]], #8\n\t"         /* row 2                     */
            "smlad %[a2], %[wa], %[x01], %[a2]\n\t"
            "smlad %[a2], %[wb], %[x23], %[a2]\n\t"
            "ldrd  %[wa], %[wb], [%[w]], #8\n\t"         /* row 3                     */
            "smlad %[a3], %[wa], %[x01], %[a3]\n\t"
            "smlad %[a3], %[wb], %[x23], %[a3]"
            : [a0] "+r"(acc[0]), [a1] "+r"(acc[1]), [a2] "+r"(acc[2]), [a3] "+r"(acc[3]),
              [w] "+r"(*w), [x] "+r"(*x),
              [x01] "=&r"(x01), [x23] "=&r"(x23), [wa] "=&r"(wa), [wb] "=&r"(wb)
            : "m"(*(const tag_q_t(*)[TAG_BLOCK_LENGTH]) * w),
              "m"(*(const tag_q_t(*)[TAG_MATVEC_BLOCK]) * x));
}
#elif TAG_NN_DSP && TAG_NN_WORD_BITS == 8
/* Cortex-M4, int8, one block: x's two words (8 columns) by LDRD, widened by SXTB16 into four
 * halfword pairs (bytes 0 and 2, then 1 and 3 after a rotate); per row an LDRD of its two
 * words, widened the same way, and four SMLAD. Budget: 5 LDRD + 4 SXTB16 for x + 4 x (4 SXTB16
 * + 4 SMLAD) = 41 instructions for 32 MACs (1.28 per MAC), with the loop's compare and branch.
 * GCC does not pair the loads into LDRD itself, hence the assembly. */
static inline void tag_block(const tag_q_t **w, const tag_q_t **x, int32_t acc[4])
{
    int32_t x02, x13, x46, x57, wa, wb, wide;
#define TAG_ROW_S8(a)                                                                   \
    "ldrd   %[wa], %[wb], [%[w]], #8\n\t"                                               \
    "sxtb16 %[wide], %[wa]\n\t"            /* w0, w2 */                                  \
    "smlad  %[" a "], %[wide], %[x02], %[" a "]\n\t"                                     \
    "sxtb16 %[wide], %[wa], ror #8\n\t"    /* w1, w3 */                                  \
    "smlad  %[" a "], %[wide], %[x13], %[" a "]\n\t"                                     \
    "sxtb16 %[wide], %[wb]\n\t"            /* w4, w6 */                                  \
    "smlad  %[" a "], %[wide], %[x46], %[" a "]\n\t"                                     \
    "sxtb16 %[wide], %[wb], ror #8\n\t"    /* w5, w7 */                                  \
    "smlad  %[" a "], %[wide], %[x57], %[" a "]\n\t"
    __asm__("ldrd   %[x02], %[x46], [%[x]], #8\n\t"      /* x[c .. c+7], as two words */
            "sxtb16 %[x13], %[x02], ror #8\n\t"          /* x1, x3 */
            "sxtb16 %[x02], %[x02]\n\t"                  /* x0, x2 */
            "sxtb16 %[x57], %[x46], ror #8\n\t"          /* x5, x7 */
            "sxtb16 %[x46], %[x46]\n\t"                  /* x4, x6 */
            TAG_ROW_S8("a0") TAG_ROW_S8("a1") TAG_ROW_S8("a2") TAG_ROW_S8("a3")
            : [a0] "+r"(acc[0]), [a1] "+r"(acc[1]), [a2] "+r"(acc[2]), [a3] "+r"(acc[3]),
              [w] "+r"(*w), [x] "+r"(*x), [x02] "=&r"(x02), [x13] "=&r"(x13),
              [x46] "=&r"(x46), [x57] "=&r"(x57), [wa] "=&r"(wa), [wb] "=&r"(wb),
              [wide] "=&r"(wide)
            : "m"(*(const tag_q_t(*)[TAG_BLOCK_LENGTH]) * w),
              "m"(*(const tag_q_t(*)[TAG_MATVEC_BLOCK]) * x));
#undef TAG_ROW_S8
}
#else
/* Plain C (the M3 and the host), one block. Budget on the M3 per column, 4 MACs: 1 LDRSH (or
 * LDRSB) of x, then per row 1 load of a weight at a fixed offset and 1 MLA = 9 instructions
 * (2.25 per MAC), with the loop's few per block. */
static inline void tag_block(const tag_q_t **w, const tag_q_t **x, int32_t acc[4])
{
    const tag_q_t *wp = *w, *xp = *x;
#pragma GCC unroll 8 /* whole: each weight a load at a fixed offset */
    for (int j = 0; j < TAG_MATVEC_BLOCK; ++j) {
        const int32_t xj = xp[j];
        acc[0] += wp[0 * TAG_MATVEC_BLOCK + j] * xj;
        acc[1] += wp[1 * TAG_MATVEC_BLOCK + j] * xj;
        acc[2] += wp[2 * TAG_MATVEC_BLOCK + j] * xj;
        acc[3] += wp[3 * TAG_MATVEC_BLOCK + j] * xj;
    }
    *w = wp + TAG_BLOCK_LENGTH;
    *x = xp + TAG_MATVEC_BLOCK;
}
#endif

/* The columns of a last, partial block, which x does not extend to: one at a time. */
static inline void tag_block_tail(const tag_q_t *w, const tag_q_t *x, int cols, int32_t acc[4])
{
    for (int j = 0; j < cols; ++j) {
        const int32_t xj = x[j];
        acc[0] += w[0 * TAG_MATVEC_BLOCK + j] * xj;
        acc[1] += w[1 * TAG_MATVEC_BLOCK + j] * xj;
        acc[2] += w[2 * TAG_MATVEC_BLOCK + j] * xj;
        acc[3] += w[3 * TAG_MATVEC_BLOCK + j] * xj;
    }
}

tag_status_t tag_matvec(const tag_matrix_t *m, const tag_q_t *x, int32_t *acc)
{
    /* LDRD takes word-aligned addresses only; the exporter aligns weights and activations. */
    if (m->rows == 0 || m->cols == 0 || ((uintptr_t)m->w & 3u) != 0 || ((uintptr_t)x & 3u) != 0) {
        return TAG_ARG_ERROR;
    }
    const int blocks = m->cols / TAG_MATVEC_BLOCK, tail = m->cols % TAG_MATVEC_BLOCK;
    const tag_q_t *w = m->w;
    for (int r = 0; r < m->rows; r += TAG_MATVEC_ROWS) {
        int32_t a[TAG_MATVEC_ROWS] = {0};
        const tag_q_t *xp = x;
#if TAG_NN_DSP /* the assembly's blocks four to a turn: the loop's cost shared */
#pragma GCC unroll 4
#else /* one: unrolled further, GCC's early loads run the M3 out of registers */
#pragma GCC unroll 1
#endif
        for (int k = 0; k < blocks; ++k) {
            tag_block(&w, &xp, a);
        }
        if (tail != 0) {
            tag_block_tail(w, xp, tail, a);
            w += TAG_BLOCK_LENGTH;
        }
        /* Stored one by one, not copied: the accumulators stay in registers. */
        const int left = m->rows - r;
        acc[r] = a[0];
        if (left > 1) {
            acc[r + 1] = a[1];
        }
        if (left > 2) {
            acc[r + 2] = a[2];
        }
        if (left > 3) {
            acc[r + 3] = a[3];
        }
    }
    return TAG_OK;
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
