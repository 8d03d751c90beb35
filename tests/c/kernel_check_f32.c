/*
 * tag_matvec_f32 against sums computed in numpy (tests/test_kernels.py writes kernel_cases.h):
 * random and extreme weights and inputs of the shapes kernel_check.c takes. Where the kernel
 * adds each product on its own (the host, the M3's software float) it must give numpy's float32
 * sums exactly; with VFMA (the M4F) each sum within its tolerance (kernel_tolerances). The exit
 * status is the number of wrong sums (at most 100; an input off its word alignment that is not
 * refused counts as one), and the host build prints the first.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernel_cases.h"
#include "tag_nn_f32.h"

#ifdef TAG_KERNEL_CHECK_HOST
#include <stdio.h>
#else
#include "platform.h"

void tag_fault_report(uint32_t pc, uint32_t cfsr)
{
    (void)pc;
    (void)cfsr;
}
#endif

#if defined(__ARM_FP) && (__ARM_FP & 4)
#define FUSED 1 /* the kernel's VFMA rounds once per product and sum */
#else
#define FUSED 0
#endif

static float input[1 + KERNEL_MAX_COLS] TAG_F32_ALIGNED;
static float sums[KERNEL_MAX_ROWS];

int main(void)
{
    int wrong = 0;
    for (int k = 0; k < KERNEL_CASES; ++k) {
        const int rows = kernel_rows[k], cols = kernel_cols[k];
        const tag_matrix_f32_t matrix = {rows, cols, kernel_weights + kernel_weight_at[k]};
        memcpy(input, kernel_inputs + kernel_input_at[k], (size_t)cols * sizeof(float));
        if (tag_matvec_f32(&matrix, (const float *)((const char *)input + 2), sums)
            != TAG_F32_ARG_ERROR) {
#ifdef TAG_KERNEL_CHECK_HOST
            printf("case %d: x off its word alignment was not refused\n", k);
#endif
            ++wrong;
        }
        tag_matvec_f32(&matrix, input, sums);
        for (int r = 0; r < rows; ++r) {
            const int at = kernel_sum_at[k] + r;
            const float error = fabsf(sums[r] - kernel_sums[at]);
            if (FUSED ? !(error <= kernel_tolerances[at]) : sums[r] != kernel_sums[at]) {
#ifdef TAG_KERNEL_CHECK_HOST
                if (wrong == 0) {
                    printf("case %d (%d x %d), row %d: %.9g, numpy %.9g\n", k, rows, cols, r,
                           (double)sums[r], (double)kernel_sums[at]);
                }
#endif
                wrong += wrong < 100;
            }
        }
    }
    return wrong;
}
