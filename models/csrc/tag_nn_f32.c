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

void tag_gru_step_f32(const tag_gru_f32_t *gru, const float *x, const float *h, float *h_next)
{
    for (int i = 0; i < gru->hidden; ++i) {
        float ax[TAG_F32_GATES], ah[TAG_F32_GATES];
        for (int g = 0; g < TAG_F32_GATES; ++g) {
            ax[g] = tag_dot_f32(gru->w_ih[g] + i * gru->in_dim, x, gru->in_dim, 0.0f);
            ah[g] = tag_dot_f32(gru->w_hh[g] + i * gru->hidden, h, gru->hidden, 0.0f);
        }
        const float r = tag_sigmoid_f32(ax[TAG_F32_GATE_R] + ah[TAG_F32_GATE_R] + gru->bias[TAG_F32_BIAS_R][i]);
        const float z = tag_sigmoid_f32(ax[TAG_F32_GATE_Z] + ah[TAG_F32_GATE_Z] + gru->bias[TAG_F32_BIAS_Z][i]);
        const float n = tanhf(ax[TAG_F32_GATE_N] + gru->bias[TAG_F32_BIAS_IN][i]
                              + r * (ah[TAG_F32_GATE_N] + gru->bias[TAG_F32_BIAS_HN][i]));
        h_next[i] = n + z * (h[i] - n);
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
