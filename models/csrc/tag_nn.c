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
 * of TAG_MATVEC_ROWS (8) rows; in a pass, blocks of TAG_MATVEC_BLOCK columns (4 int16 or 8 int8:
 * two 32-bit words of each row); in a block, the pass's rows one after the other, 8 bytes each;
 * zeros fill the last pass and block. A pass is one pointer walking forward through contiguous
 * memory, and each column of x meets all the pass's rows while it is in a register. */
#if TAG_MATVEC_ROWS != 8
#error "the mat-vec kernels keep eight sums a pass: TAG_MATVEC_ROWS must be 8"
#endif
#define TAG_BLOCK_LENGTH (TAG_MATVEC_ROWS * TAG_MATVEC_BLOCK) /* words of a block */
#define TAG_SWEEP_ROWS 4 /* rows the M4 sweeps at a time: its registers hold four sums */

/* The plain C reference (the host, and any core built with TAG_NN_PLAIN_C), also the M3's and
 * the M4's columns after their last whole turn or block: columns [from, to) of `rows` rows of
 * a pass (or of the half a sweep reads), into acc[0 .. rows); `from` starts a block. The rows
 * unrolled, so that the sums stay in registers. */
static inline void tag_columns(const tag_q_t *pass, const tag_q_t *x, int from, int to, int rows,
                               int32_t *acc)
{
    const tag_q_t *block = pass + from / TAG_MATVEC_BLOCK * TAG_BLOCK_LENGTH;
    for (int c = from; c < to; c += TAG_MATVEC_BLOCK, block += TAG_BLOCK_LENGTH) {
        const int n = to - c < TAG_MATVEC_BLOCK ? to - c : TAG_MATVEC_BLOCK;
        for (int j = 0; j < n; ++j) {
            const int32_t xc = x[c + j];
#pragma GCC unroll 8
            for (int r = 0; r < rows; ++r) {
                acc[r] += block[r * TAG_MATVEC_BLOCK + j] * xc;
            }
        }
    }
}

/* A pass's sums, stored one by one rather than copied, so that they stay in registers: the
 * rows left of the matrix, at most `n`. */
static inline void tag_store_sums(const int32_t *sums, int n, int left, int32_t *acc)
{
    if (left >= n) { /* every pass but a matrix's last: no compare per row */
#pragma GCC unroll 8
        for (int i = 0; i < n; ++i) {
            acc[i] = sums[i];
        }
        return;
    }
#pragma GCC unroll 8
    for (int i = 0; i < n; ++i) {
        if (i < left) {
            acc[i] = sums[i];
        }
    }
}

#if TAG_NN_DSP && TAG_NN_WORD_BITS == 16
/* Cortex-M4, int16, one block of the 4 rows of a sweep: x's two words (4 columns) by LDRD, then
 * per row an LDRD of its two words and two SMLAD, each adding two products; the last LDRD steps
 * over the pass's other 4 rows. Budget: 5 LDRD + 8 SMLAD = 13 instructions for 16 MACs (0.81
 * per MAC); the pointers move by post-indexing, so the loop adds only its compare and branch.
 * GCC does not pair the loads into LDRD itself, hence the assembly. */
typedef tag_q_t tag_block_x_t; /* what a block reads of x: x itself */
static inline void tag_block(const tag_q_t **w, const tag_block_x_t **x, int32_t acc[4])
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
            "ldrd  %[wa], %[wb], [%[w]], #40\n\t"        /* row 3, then past rows 4-7 */
            "smlad %[a3], %[wa], %[x01], %[a3]\n\t"
            "smlad %[a3], %[wb], %[x23], %[a3]"
            : [a0] "+r"(acc[0]), [a1] "+r"(acc[1]), [a2] "+r"(acc[2]), [a3] "+r"(acc[3]),
              [w] "+r"(*w), [x] "+r"(*x),
              [x01] "=&r"(x01), [x23] "=&r"(x23), [wa] "=&r"(wa), [wb] "=&r"(wb)
            : "m"(*(const tag_q_t(*)[TAG_BLOCK_LENGTH]) * w),
              "m"(*(const tag_q_t(*)[TAG_MATVEC_BLOCK]) * x));
}
#elif TAG_NN_DSP && TAG_NN_WORD_BITS == 8
/* Cortex-M4, int8. x is widened once per mat-vec (tag_widen), not in every sweep: each block of
 * 8 columns as four words of halfword pairs, (x0, x2), (x1, x3), (x4, x6), (x5, x7), the order
 * SXTB16 takes a weight word apart in (bytes 0 and 2, then 1 and 3 after a rotate). */
typedef int32_t tag_block_x_t;
#define TAG_WIDE_WORDS 4 /* words of widened x per block */
static inline int32_t tag_ror8(int32_t word) /* GCC folds it into SXTB16's rotate */
{
    return (int32_t)(((uint32_t)word >> 8) | ((uint32_t)word << 24));
}

static inline void tag_widen(const tag_q_t *x, int blocks, int32_t *wide)
{
    for (int k = 0; k < blocks; ++k, x += TAG_MATVEC_BLOCK, wide += TAG_WIDE_WORDS) {
        const int32_t low = tag_load_word(x), high = tag_load_word(x + 4);
        wide[0] = __sxtb16(low);
        wide[1] = __sxtb16(tag_ror8(low));
        wide[2] = __sxtb16(high);
        wide[3] = __sxtb16(tag_ror8(high));
    }
}

/* One block of the 4 rows of a sweep: widened x by two LDRD; per row an LDRD of its two words,
 * each taken apart by two SXTB16, and four SMLAD; the last LDRD steps over the pass's other 4
 * rows. Budget: 6 LDRD + 4 x (4 SXTB16 + 4 SMLAD) = 38 instructions for 32 MACs (1.19 per
 * MAC), with the loop's compare and branch. GCC does not pair the loads into LDRD itself, hence
 * the assembly. */
static inline void tag_block(const tag_q_t **w, const tag_block_x_t **x, int32_t acc[4])
{
    int32_t x02, x13, x46, x57, wa, wb, wide;
#define TAG_ROW_S8(a, step)                                                             \
    "ldrd   %[wa], %[wb], [%[w]], #" step "\n\t"                                        \
    "sxtb16 %[wide], %[wa]\n\t"            /* w0, w2 */                                  \
    "smlad  %[" a "], %[wide], %[x02], %[" a "]\n\t"                                     \
    "sxtb16 %[wide], %[wa], ror #8\n\t"    /* w1, w3 */                                  \
    "smlad  %[" a "], %[wide], %[x13], %[" a "]\n\t"                                     \
    "sxtb16 %[wide], %[wb]\n\t"            /* w4, w6 */                                  \
    "smlad  %[" a "], %[wide], %[x46], %[" a "]\n\t"                                     \
    "sxtb16 %[wide], %[wb], ror #8\n\t"    /* w5, w7 */                                  \
    "smlad  %[" a "], %[wide], %[x57], %[" a "]\n\t"
    __asm__("ldrd   %[x02], %[x13], [%[x]], #8\n\t"      /* (x0, x2), (x1, x3) */
            "ldrd   %[x46], %[x57], [%[x]], #8\n\t"      /* (x4, x6), (x5, x7) */
            TAG_ROW_S8("a0", "8") TAG_ROW_S8("a1", "8") TAG_ROW_S8("a2", "8")
            TAG_ROW_S8("a3", "40")                       /* then past rows 4-7 */
            : [a0] "+r"(acc[0]), [a1] "+r"(acc[1]), [a2] "+r"(acc[2]), [a3] "+r"(acc[3]),
              [w] "+r"(*w), [x] "+r"(*x), [x02] "=&r"(x02), [x13] "=&r"(x13),
              [x46] "=&r"(x46), [x57] "=&r"(x57), [wa] "=&r"(wa), [wb] "=&r"(wb),
              [wide] "=&r"(wide)
            : "m"(*(const tag_q_t(*)[TAG_BLOCK_LENGTH]) * w),
              "m"(*(const tag_block_x_t(*)[TAG_WIDE_WORDS]) * x));
#undef TAG_ROW_S8
}
#endif

#if TAG_NN_DSP
/* The M4's sweep: 4 rows (a half pass, from `half`) by all of x (xs: as the blocks read it),
 * its blocks four to a turn (the loop's cost shared; unrolled by hand, as GCC's unrolling
 * enters the loop through a jump table that costs each sweep more than it saves), into
 * acc[0 .. min(4, left)). */
static inline __attribute__((always_inline)) void tag_sweep(const tag_q_t *half,
                                                            const tag_block_x_t *xs,
                                                            const tag_q_t *x, int cols,
                                                            int left, int32_t *acc)
{
    const int blocks = cols / TAG_MATVEC_BLOCK;
    const tag_q_t *w = half;
    const tag_block_x_t *xp = xs;
    int32_t a[TAG_SWEEP_ROWS] = {0};
    int k = blocks;
    for (; k >= 4; k -= 4) {
        tag_block(&w, &xp, a);
        tag_block(&w, &xp, a);
        tag_block(&w, &xp, a);
        tag_block(&w, &xp, a);
    }
#pragma GCC unroll 1
    for (; k > 0; --k) {
        tag_block(&w, &xp, a);
    }
    if (blocks * TAG_MATVEC_BLOCK < cols) {
        tag_columns(half, x, blocks * TAG_MATVEC_BLOCK, cols, TAG_SWEEP_ROWS, a);
    }
    tag_store_sums(a, TAG_SWEEP_ROWS, left, acc);
}
#elif defined(__ARM_ARCH_7M__) && !defined(TAG_NN_PLAIN_C)
#define TAG_NN_M3 1
/* Cortex-M3, one turn of 8 columns (two int16 blocks, one int8 block) of all 8 rows of a pass:
 * per column one LDRSH (LDRSB) of x, then per row one load of its weight at a fixed offset and
 * one MLA, into eight sums that stay in registers. Budget: 8 x (1 + 8 x 2) + 1 = 137
 * instructions for 64 MACs, with the loop's few: 2.17 per MAC (the M3 has no SIMD multiply: two
 * instructions per MAC is its floor). In assembly because GCC, given this in C, loads ahead
 * until it runs out of registers and spills the sums. */
#if TAG_NN_WORD_BITS == 16
#define TAG_M3_LOAD "ldrsh"
#define TAG_M3_COLUMN_BYTES "2" /* x's step */
#define TAG_M3_TURN_BLOCKS 2
#else
#define TAG_M3_LOAD "ldrsb"
#define TAG_M3_COLUMN_BYTES "1"
#define TAG_M3_TURN_BLOCKS 1
#endif
#define TAG_M3_TURN_COLUMNS 8
#define TAG_M3_ROW(a, at)                                                               \
    TAG_M3_LOAD " %[wt], [%[w], #" at "]\n\t"                                          \
    "mla   %[" a "], %[wt], %[xc], %[" a "]\n\t"
/* Column at byte `at` of the turn's first row: the 8 rows 8 bytes apart. */
#define TAG_M3_COLUMN(at)                                                               \
    TAG_M3_LOAD " %[xc], [%[x]], #" TAG_M3_COLUMN_BYTES "\n\t"                          \
    TAG_M3_ROW("a0", at "+0") TAG_M3_ROW("a1", at "+8") TAG_M3_ROW("a2", at "+16")      \
    TAG_M3_ROW("a3", at "+24") TAG_M3_ROW("a4", at "+32") TAG_M3_ROW("a5", at "+40")    \
    TAG_M3_ROW("a6", at "+48") TAG_M3_ROW("a7", at "+56")
static inline void tag_turn(const tag_q_t **w, const tag_q_t **x, int32_t acc[8])
{
    int32_t xc, wt;
    __asm__(
#if TAG_NN_WORD_BITS == 16 /* block 0 at byte 0, block 1 at byte 64; columns 2 bytes apart */
            TAG_M3_COLUMN("0") TAG_M3_COLUMN("2") TAG_M3_COLUMN("4") TAG_M3_COLUMN("6")
            TAG_M3_COLUMN("64") TAG_M3_COLUMN("66") TAG_M3_COLUMN("68") TAG_M3_COLUMN("70")
            "add   %[w], %[w], #128"
#else /* one block; columns 1 byte apart */
            TAG_M3_COLUMN("0") TAG_M3_COLUMN("1") TAG_M3_COLUMN("2") TAG_M3_COLUMN("3")
            TAG_M3_COLUMN("4") TAG_M3_COLUMN("5") TAG_M3_COLUMN("6") TAG_M3_COLUMN("7")
            "add   %[w], %[w], #64"
#endif
            : [a0] "+r"(acc[0]), [a1] "+r"(acc[1]), [a2] "+r"(acc[2]), [a3] "+r"(acc[3]),
              [a4] "+r"(acc[4]), [a5] "+r"(acc[5]), [a6] "+r"(acc[6]), [a7] "+r"(acc[7]),
              [w] "+r"(*w), [x] "+r"(*x), [xc] "=&r"(xc), [wt] "=&r"(wt)
            : "m"(*(const tag_q_t(*)[TAG_M3_TURN_BLOCKS * TAG_BLOCK_LENGTH]) * w),
              "m"(*(const tag_q_t(*)[TAG_M3_TURN_COLUMNS]) * x));
}
#undef TAG_M3_COLUMN
#undef TAG_M3_ROW
#endif

tag_status_t tag_matvec(const tag_matrix_t *m, const tag_q_t *x, int32_t *acc)
{
    /* LDRD takes word-aligned addresses only; the exporter aligns weights and activations. */
    if (m->rows == 0 || m->cols == 0 || m->cols > TAG_NN_MAX_COLS || ((uintptr_t)m->w & 3u) != 0
        || ((uintptr_t)x & 3u) != 0) {
        return TAG_ARG_ERROR;
    }
    const int cols = m->cols;
    const int pass_length = (cols + TAG_MATVEC_BLOCK - 1) / TAG_MATVEC_BLOCK * TAG_BLOCK_LENGTH;
#if TAG_NN_DSP
#if TAG_NN_WORD_BITS == 8
    int32_t wide[(TAG_NN_MAX_COLS / TAG_MATVEC_BLOCK + 1) * TAG_WIDE_WORDS];
    tag_widen(x, cols / TAG_MATVEC_BLOCK, wide);
    const tag_block_x_t *xs = wide;
#else
    const tag_block_x_t *xs = x;
#endif
    /* Each pass in two sweeps of 4 rows (its first and second half), the second only where the
     * matrix has rows there. */
    const tag_q_t *pass = m->w;
    for (int r = 0; r < m->rows; r += TAG_MATVEC_ROWS, pass += pass_length) {
        tag_sweep(pass, xs, x, cols, m->rows - r, acc + r);
        if (m->rows - r > TAG_SWEEP_ROWS) {
            tag_sweep(pass + TAG_SWEEP_ROWS * TAG_MATVEC_BLOCK, xs, x, cols,
                      m->rows - r - TAG_SWEEP_ROWS, acc + r + TAG_SWEEP_ROWS);
        }
    }
#else
    const tag_q_t *pass = m->w;
    for (int r = 0; r < m->rows; r += TAG_MATVEC_ROWS, pass += pass_length) {
        int32_t a[TAG_MATVEC_ROWS] = {0};
        int done = 0; /* columns summed */
#ifdef TAG_NN_M3
        const tag_q_t *w = pass, *xp = x;
#pragma GCC unroll 1
        for (; done + TAG_M3_TURN_COLUMNS <= cols; done += TAG_M3_TURN_COLUMNS) {
            tag_turn(&w, &xp, a);
        }
#endif
        tag_columns(pass, x, done, cols, TAG_MATVEC_ROWS, a);
        tag_store_sums(a, TAG_MATVEC_ROWS, m->rows - r, acc + r);
    }
#endif
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
