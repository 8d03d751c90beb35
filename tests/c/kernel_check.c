/*
 * tag_matvec against sums computed in numpy (tests/test_kernels.py writes kernel_cases.h):
 * random and extreme weights and inputs, every shape the passes of several rows treat apart
 * (tail rows, tail columns, one row, one column), weights in matvec_layout's order. Built for
 * the host and for each target's core; the exit status is the number of wrong sums (at most
 * 100; an input off its word alignment that tag_matvec does not refuse counts as one), and the
 * host build prints the first. A matrix wider than TAG_NN_MAX_COLS must be refused too.
 */
#include <stdint.h>
#include <string.h>

#include "kernel_cases.h"
#include "tag_nn.h"

#ifdef TAG_KERNEL_CHECK_HOST
#include <stdio.h>
#else
#include "platform.h"

/* A fault ends the run with TAG_EXIT_FAULT (the platform's); nothing to print here. */
void tag_fault_report(uint32_t pc, uint32_t cfsr)
{
    (void)pc;
    (void)cfsr;
}
#endif

static tag_q_t input[2 + KERNEL_MAX_COLS] TAG_NN_ALIGNED;
static int32_t sums[KERNEL_MAX_ROWS];

int main(void)
{
    int wrong = 0;
    for (int k = 0; k < KERNEL_CASES; ++k) {
        const int rows = kernel_rows[k], cols = kernel_cols[k];
        const tag_matrix_t matrix = {rows, cols, kernel_weights + kernel_weight_at[k]};
        memcpy(input, kernel_inputs + kernel_input_at[k], (size_t)cols * sizeof(tag_q_t));
        if (tag_matvec(&matrix, input + 1, sums) != TAG_ARG_ERROR) { /* LDRD would fault */
#ifdef TAG_KERNEL_CHECK_HOST
            printf("case %d: x off its word alignment was not refused\n", k);
#endif
            ++wrong;
        }
        tag_matvec(&matrix, input, sums);
        for (int r = 0; r < rows; ++r) {
            if (sums[r] != kernel_sums[kernel_sum_at[k] + r]) {
#ifdef TAG_KERNEL_CHECK_HOST
                if (wrong == 0) {
                    printf("case %d (%d x %d), row %d: %ld, numpy %ld\n", k, rows, cols, r,
                           (long)sums[r], (long)kernel_sums[kernel_sum_at[k] + r]);
                }
#endif
                wrong += wrong < 100;
            }
        }
    }
    /* Wider than the exporter's bound (TAG_NN_MAX_COLS sizes the M4's widened x): refused. */
    const tag_matrix_t too_wide = {1, TAG_NN_MAX_COLS + 1, kernel_weights};
    if (tag_matvec(&too_wide, input, sums) != TAG_ARG_ERROR) {
#ifdef TAG_KERNEL_CHECK_HOST
        printf("a matrix of %d columns was not refused\n", TAG_NN_MAX_COLS + 1);
#endif
        ++wrong;
    }
    return wrong;
}
