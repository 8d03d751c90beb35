/*
 * float32 kernels of the tag models: the same operations as tag_nn.h without quantization, for
 * measuring what fixed point saves (and what software float costs on a core without an FPU).
 */
#ifndef TAG_NN_F32_H
#define TAG_NN_F32_H

#include <stdint.h>

#include "tag_nn_f32_config.h"

/* What tag_matvec_f32 reads a block at a time (VLDM), weights and the input, is declared with
 * this. */
#define TAG_F32_ALIGNED __attribute__((aligned(8)))

typedef enum { TAG_F32_OK = 0, TAG_F32_ARG_ERROR = -1 } tag_f32_status_t;

/* A matrix as tag_matvec_f32 reads it: rows x cols in matvec_layout's order (models/export.py:
 * passes of TAG_F32_MATVEC_ROWS rows, blocks of TAG_F32_MATVEC_BLOCK columns, zero padded). */
typedef struct {
    uint16_t rows, cols;
    const float *w;
} tag_matrix_f32_t;

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
    tag_matrix_f32_t w_ih;              /* TAG_F32_GATES * hidden rows (the gates stacked) x in_dim */
    tag_matrix_f32_t w_hh;              /* TAG_F32_GATES * hidden rows x hidden */
    const float *bias[TAG_F32_BIASES];  /* each [hidden] */
} tag_gru_f32_t;

/* The gates' products of one step, for all units; the caller owns it (in tag_model_t). */
typedef struct {
    float ax[TAG_F32_GATES * TAG_F32_MAX_HIDDEN]; /* W_ih x, gate by gate */
    float ah[TAG_F32_GATES * TAG_F32_MAX_HIDDEN]; /* W_hh h */
} tag_gru_f32_scratch_t;

/* n wire counts in Q(.in_frac) g to float g. */
void tag_input_f32(const int16_t *counts, int n, int in_frac, float *out);
/* Mean in g of `pool` consecutive wire counts per axis: [length][axes] -> [length / pool][axes]. */
void tag_avgpool_f32(const int16_t *counts, int length, int axes, int pool, int in_frac,
                     float *out);
void tag_dense_f32(const tag_dense_f32_t *layer, const float *in, float *out);
/* acc[r] = sum over c of w[r][c] x[c] for every row of m, each row adding its products in
 * column order; TAG_F32_MATVEC_ROWS rows per pass (VLDM and VFMA on a single-precision FPU).
 * TAG_F32_ARG_ERROR for an empty or misaligned matrix or x (both must be word aligned). */
tag_f32_status_t tag_matvec_f32(const tag_matrix_f32_t *m, const float *x, float *acc);
/* One time step: h_next = GRU(x, h). h and h_next must not overlap; x and h word aligned. */
tag_f32_status_t tag_gru_step_f32(const tag_gru_f32_t *gru, const float *x, const float *h,
                                  float *h_next, tag_gru_f32_scratch_t *scratch);
int tag_argmax_f32(const float *values, int n);

#endif /* TAG_NN_F32_H */
