/*
 * tag_sigmoid_q15 and tag_tanh_q15 on every 16-bit pre-activation, for the input format given
 * as the first argument (fractional bits): writes, as raw little-endian int16, the 65536
 * sigmoids then the 65536 tanhs of -32768 .. 32767. tests/test_kernels.py compares them with
 * the numpy reference (models/fixedpoint.py).
 */
#include <stdio.h>
#include <stdlib.h>

#include "tag_nn.h"

/* The Q format is a constant in a model's C (its layers are const); here one function per
 * format the test asks for keeps it one, as there. */
#define TAG_CHECK_FRAC(frac)                                                            \
    static void check_##frac(int16_t *out)                                              \
    {                                                                                   \
        for (int32_t v = -32768; v <= 32767; ++v) {                                     \
            out[v + 32768] = tag_sigmoid_q15(v, frac);                                  \
            out[v + 32768 + 65536] = tag_tanh_q15(v, frac);                             \
        }                                                                               \
    }
TAG_CHECK_FRAC(8)
TAG_CHECK_FRAC(11)
TAG_CHECK_FRAC(12)
TAG_CHECK_FRAC(13)
TAG_CHECK_FRAC(15)

static int16_t out[2 * 65536];

int main(int argc, char **argv)
{
    const int frac = argc > 1 ? atoi(argv[1]) : -1;
    switch (frac) {
    case 8: check_8(out); break;
    case 11: check_11(out); break;
    case 12: check_12(out); break;
    case 13: check_13(out); break;
    case 15: check_15(out); break;
    default: fprintf(stderr, "usage: activation_check 8|11|12|13|15\n"); return 2;
    }
    return fwrite(out, sizeof out[0], 2 * 65536, stdout) == 2 * 65536 ? 0 : 1;
}
