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

#if defined(__ARM_FP) && (__ARM_FP & 4)
/* A single-precision FPU (the M4F): VFMA, four units of a gate a pass so that each load of x
 * serves four rows; every row still adds its products in column order. */
#define TAG_F32_UNITS_PER_PASS 4
static void tag_rows_f32(const float *w, const float *x, int cols, float *acc)
{
    const float *w0 = w, *w1 = w + cols, *w2 = w + 2 * cols, *w3 = w + 3 * cols;
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    for (int c = 0; c < cols; ++c) {
        const float xc = x[c];
        a0 = fmaf(w0[c], xc, a0);
        a1 = fmaf(w1[c], xc, a1);
        a2 = fmaf(w2[c], xc, a2);
        a3 = fmaf(w3[c], xc, a3);
    }
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
}
#else
/* Software float (the M3) and the host: a unit at a time, as the float model always ran there. */
#define TAG_F32_UNITS_PER_PASS 1
static void tag_rows_f32(const float *w, const float *x, int cols, float *acc)
{
    acc[0] = tag_dot_f32(w, x, cols, 0.0f);
}
#endif

void tag_gru_step_f32(const tag_gru_f32_t *gru, const float *x, const float *h, float *h_next)
{
    enum { UNITS = TAG_F32_UNITS_PER_PASS };
    for (int first = 0; first < gru->hidden; first += UNITS) {
        float ax[TAG_F32_GATES][UNITS], ah[TAG_F32_GATES][UNITS];
        const int units = gru->hidden - first < UNITS ? gru->hidden - first : UNITS;
        for (int g = 0; g < TAG_F32_GATES; ++g) {
            if (units == UNITS) {
                tag_rows_f32(gru->w_ih[g] + first * gru->in_dim, x, gru->in_dim, ax[g]);
                tag_rows_f32(gru->w_hh[g] + first * gru->hidden, h, gru->hidden, ah[g]);
                continue;
            }
            for (int k = 0; k < units; ++k) { /* the last few units of a hidden size not a multiple */
                ax[g][k] = tag_dot_f32(gru->w_ih[g] + (first + k) * gru->in_dim, x, gru->in_dim, 0.0f);
                ah[g][k] = tag_dot_f32(gru->w_hh[g] + (first + k) * gru->hidden, h, gru->hidden, 0.0f);
            }
        }
        for (int k = 0; k < units; ++k) {
            const int i = first + k;
            const float r = tag_sigmoid_f32(ax[TAG_F32_GATE_R][k] + ah[TAG_F32_GATE_R][k] + gru->bias[TAG_F32_BIAS_R][i]);
            const float z = tag_sigmoid_f32(ax[TAG_F32_GATE_Z][k] + ah[TAG_F32_GATE_Z][k] + gru->bias[TAG_F32_BIAS_Z][i]);
            const float n = tanhf(ax[TAG_F32_GATE_N][k] + gru->bias[TAG_F32_BIAS_IN][i]
                                  + r * (ah[TAG_F32_GATE_N][k] + gru->bias[TAG_F32_BIAS_HN][i]));
            h_next[i] = n + z * (h[i] - n);
        }
    }
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
