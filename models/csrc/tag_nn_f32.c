#include "tag_nn_f32.h"

#include <math.h>

void tag_input_f32(const int16_t *counts, int n, int in_frac, float *out)
{
    const float scale = 1.0f / (float)(1L << in_frac);
    for (int i = 0; i < n; ++i) {
        out[i] = (float)counts[i] * scale;
    }
}

void tag_avgpool_f32(const int16_t *counts, int length, int axes, int pool, int in_frac,
                     float *out)
{
    const float scale = 1.0f / (float)(1L << in_frac);
    for (int block = 0; block < length / pool; ++block) {
        for (int axis = 0; axis < axes; ++axis) {
            float sum = 0.0f;
            for (int t = 0; t < pool; ++t) {
                sum += (float)counts[(block * pool + t) * axes + axis] * scale;
            }
            out[block * axes + axis] = sum / (float)pool;
        }
    }
}

static float tag_dot_f32(const float *w, const float *x, int n, float acc)
{
    for (int j = 0; j < n; ++j) {
        acc += w[j] * x[j];
    }
    return acc;
}

void tag_dense_f32(const tag_dense_f32_t *layer, const float *in, float *out)
{
    for (int i = 0; i < layer->out_dim; ++i) {
        const float y = tag_dot_f32(layer->weights + i * layer->in_dim, in, layer->in_dim,
                                    layer->bias[i]);
        out[i] = (layer->relu && y < 0.0f) ? 0.0f : y;
    }
}

static float tag_sigmoid_f32(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

#if TAG_F32_MATVEC_ROWS != 4 || TAG_F32_MATVEC_BLOCK != 4
#error "tag_block_f32 keeps four accumulators and takes four columns"
#endif
#define TAG_F32_BLOCK_LENGTH (TAG_F32_MATVEC_ROWS * TAG_F32_MATVEC_BLOCK)

#if defined(__ARM_FP) && (__ARM_FP & 4) && !defined(TAG_NN_PLAIN_C)
/* A single-precision FPU (the M4F), one block: x's four columns and the four rows' sixteen
 * weights by one VLDM each, then sixteen VFMA, each row's in column order. Budget: 2 VLDM +
 * 16 VFMA = 18 instructions for 16 MACs (1.13 per MAC), with the loop's compare and branch.
 * VLDM needs consecutive registers, which only assembly can name: s16-s31 hold the weights
 * and s8-s11 x (GCC saves s16-s31 once per call, as the ABI asks). */
static inline void tag_block_f32(const float **w, const float **x, float acc[4])
{
    __asm__("vldmia   %[x]!, {s8-s11}\n\t"              /* x[c .. c+3]                 */
            "vldmia   %[w]!, {s16-s31}\n\t"             /* rows 0..3, four columns each */
            "vfma.f32 %[a0], s16, s8\n\t"
            "vfma.f32 %[a0], s17, s9\n\t"
            "vfma.f32 %[a0], s18, s10\n\t"
            "vfma.f32 %[a0], s19, s11\n\t"
            "vfma.f32 %[a1], s20, s8\n\t"
            "vfma.f32 %[a1], s21, s9\n\t"
            "vfma.f32 %[a1], s22, s10\n\t"
            "vfma.f32 %[a1], s23, s11\n\t"
            "vfma.f32 %[a2], s24, s8\n\t"
            "vfma.f32 %[a2], s25, s9\n\t"
            "vfma.f32 %[a2], s26, s10\n\t"
            "vfma.f32 %[a2], s27, s11\n\t"
            "vfma.f32 %[a3], s28, s8\n\t"
            "vfma.f32 %[a3], s29, s9\n\t"
            "vfma.f32 %[a3], s30, s10\n\t"
            "vfma.f32 %[a3], s31, s11"
            : [a0] "+t"(acc[0]), [a1] "+t"(acc[1]), [a2] "+t"(acc[2]), [a3] "+t"(acc[3]),
              [w] "+r"(*w), [x] "+r"(*x)
            : "m"(*(const float(*)[TAG_F32_BLOCK_LENGTH]) * w),
              "m"(*(const float(*)[TAG_F32_MATVEC_BLOCK]) * x)
            : "s8", "s9", "s10", "s11", "s16", "s17", "s18", "s19", "s20", "s21", "s22", "s23",
              "s24", "s25", "s26", "s27", "s28", "s29", "s30", "s31");
}

static inline float tag_mac_f32(float w, float x, float acc)
{
    return fmaf(w, x, acc); /* VFMA, as in the blocks */
}
#else
/* Software float (the M3) and the host: a multiply and an add per product, in column order, as
 * the float model always ran there. */
static inline float tag_mac_f32(float w, float x, float acc)
{
    return acc + w * x;
}

static inline void tag_block_f32(const float **w, const float **x, float acc[4])
{
    const float *wp = *w, *xp = *x;
    for (int j = 0; j < TAG_F32_MATVEC_BLOCK; ++j) {
        acc[0] = tag_mac_f32(wp[0 * TAG_F32_MATVEC_BLOCK + j], xp[j], acc[0]);
        acc[1] = tag_mac_f32(wp[1 * TAG_F32_MATVEC_BLOCK + j], xp[j], acc[1]);
        acc[2] = tag_mac_f32(wp[2 * TAG_F32_MATVEC_BLOCK + j], xp[j], acc[2]);
        acc[3] = tag_mac_f32(wp[3 * TAG_F32_MATVEC_BLOCK + j], xp[j], acc[3]);
    }
    *w = wp + TAG_F32_BLOCK_LENGTH;
    *x = xp + TAG_F32_MATVEC_BLOCK;
}
#endif

tag_f32_status_t tag_matvec_f32(const tag_matrix_f32_t *m, const float *x, float *acc)
{
    if (m->rows == 0 || m->cols == 0 || ((uintptr_t)m->w & 3u) != 0 || ((uintptr_t)x & 3u) != 0) {
        return TAG_F32_ARG_ERROR;
    }
    const int blocks = m->cols / TAG_F32_MATVEC_BLOCK, tail = m->cols % TAG_F32_MATVEC_BLOCK;
    const float *w = m->w;
    for (int r = 0; r < m->rows; r += TAG_F32_MATVEC_ROWS) {
        float a[TAG_F32_MATVEC_ROWS] = {0.0f, 0.0f, 0.0f, 0.0f};
        const float *xp = x;
#pragma GCC unroll 2
        for (int k = 0; k < blocks; ++k) {
            tag_block_f32(&w, &xp, a);
        }
        for (int j = 0; j < tail; ++j) { /* a last, partial block, which x does not extend to */
            a[0] = tag_mac_f32(w[0 * TAG_F32_MATVEC_BLOCK + j], xp[j], a[0]);
            a[1] = tag_mac_f32(w[1 * TAG_F32_MATVEC_BLOCK + j], xp[j], a[1]);
            a[2] = tag_mac_f32(w[2 * TAG_F32_MATVEC_BLOCK + j], xp[j], a[2]);
            a[3] = tag_mac_f32(w[3 * TAG_F32_MATVEC_BLOCK + j], xp[j], a[3]);
        }
        w += tail != 0 ? TAG_F32_BLOCK_LENGTH : 0;
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
    return TAG_F32_OK;
}

tag_f32_status_t tag_gru_step_f32(const tag_gru_f32_t *gru, const float *x, const float *h,
                                  float *h_next, tag_gru_f32_scratch_t *scratch)
{
    const int hidden = gru->hidden;
    if (tag_matvec_f32(&gru->w_ih, x, scratch->ax) != TAG_F32_OK
        || tag_matvec_f32(&gru->w_hh, h, scratch->ah) != TAG_F32_OK) {
        return TAG_F32_ARG_ERROR;
    }
    const float *ax = scratch->ax, *ah = scratch->ah;
    for (int i = 0; i < hidden; ++i) {
        const float r = tag_sigmoid_f32(ax[TAG_F32_GATE_R * hidden + i] + ah[TAG_F32_GATE_R * hidden + i]
                                        + gru->bias[TAG_F32_BIAS_R][i]);
        const float z = tag_sigmoid_f32(ax[TAG_F32_GATE_Z * hidden + i] + ah[TAG_F32_GATE_Z * hidden + i]
                                        + gru->bias[TAG_F32_BIAS_Z][i]);
        const float n = tanhf(ax[TAG_F32_GATE_N * hidden + i] + gru->bias[TAG_F32_BIAS_IN][i]
                              + r * (ah[TAG_F32_GATE_N * hidden + i] + gru->bias[TAG_F32_BIAS_HN][i]));
        h_next[i] = n + z * (h[i] - n);
    }
    return TAG_F32_OK;
}

int tag_argmax_f32(const float *values, int n)
{
    int best = 0;
    for (int i = 1; i < n; ++i) {
        if (values[i] > values[best]) {
            best = i;
        }
    }
    return best;
}
