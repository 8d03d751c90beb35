/*
 * float32 kernels of the tag models: the same operations as tag_nn.h without quantization, for
 * measuring what fixed point saves (and what software float costs on a core without an FPU).
 */
#ifndef TAG_NN_F32_H
#define TAG_NN_F32_H

#include <stdint.h>

typedef struct {
    uint16_t in_dim, out_dim;
    uint8_t relu;
    const float *weights; /* [out_dim][in_dim] */
    const float *bias;    /* [out_dim] */
} tag_dense_f32_t;

enum { TAG_F32_GATE_R, TAG_F32_GATE_Z, TAG_F32_GATE_N, TAG_F32_GATES };
enum { TAG_F32_BIAS_R, TAG_F32_BIAS_Z, TAG_F32_BIAS_IN, TAG_F32_BIAS_HN, TAG_F32_BIASES };

typedef struct {
    uint16_t in_dim, hidden;
    const float *w_ih[TAG_F32_GATES];   /* each [hidden][in_dim] */
    const float *w_hh[TAG_F32_GATES];   /* each [hidden][hidden] */
    const float *bias[TAG_F32_BIASES];  /* each [hidden] */
} tag_gru_f32_t;

/* n wire counts in Q(.in_frac) g to float g. */
void tag_input_f32(const int16_t *counts, int n, int in_frac, float *out);
/* Mean in g of `pool` consecutive wire counts per axis: [length][axes] -> [length / pool][axes]. */
void tag_avgpool_f32(const int16_t *counts, int length, int axes, int pool, int in_frac,
                     float *out);
void tag_dense_f32(const tag_dense_f32_t *layer, const float *in, float *out);
/* One time step: h_next = GRU(x, h). h and h_next must not overlap. */
void tag_gru_step_f32(const tag_gru_f32_t *gru, const float *x, const float *h, float *h_next);
int tag_argmax_f32(const float *values, int n);

#endif /* TAG_NN_F32_H */
